import pytest

from strom.errors import InvalidJobError
from strom.runtime.restart import (
    ExponentialDelayRestart,
    FailureRateRestart,
    RestartStrategies,
)


def test_no_restart_gives_up_at_once() -> None:
    assert RestartStrategies.no_restart().next_delay(0.0) is None


def test_fixed_delay_counts_attempts() -> None:
    s = RestartStrategies.fixed_delay_restart(2, 1500)
    assert [s.next_delay(t) for t in (0.0, 1.0, 2.0)] == [1.5, 1.5, None]


def test_exponential_delay_grows_caps_and_resets() -> None:
    s = ExponentialDelayRestart(0.1, 1.0, multiplier=2.0, reset_after_s=10.0)
    delays = [s.next_delay(float(t)) for t in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert s.next_delay(100.0) == pytest.approx(0.1)  # quiet for longer than reset_after_s


def test_exponential_jitter_only_shortens() -> None:
    s = RestartStrategies.exponential_delay_restart(1000, 1000, jitter_factor=0.5)
    for t in range(20):
        d = s.next_delay(float(t))
        assert d is not None
        assert 0.5 <= d <= 1.0


def test_exponential_attempt_limit() -> None:
    s = RestartStrategies.exponential_delay_restart(10, 100, attempts=2)
    assert s.next_delay(0) is not None
    assert s.next_delay(1) is not None
    assert s.next_delay(2) is None


def test_failure_rate_gives_up_when_too_many_failures_in_interval() -> None:
    s = FailureRateRestart(max_failures=2, interval_s=10.0, delay_s=0.5)
    assert s.next_delay(0.0) == 0.5
    assert s.next_delay(1.0) == 0.5
    assert s.next_delay(2.0) is None
    s2 = FailureRateRestart(max_failures=2, interval_s=10.0, delay_s=0.5)
    assert [s2.next_delay(t) for t in (0.0, 1.0, 20.0, 21.0)] == [0.5, 0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "make",
    [
        lambda: RestartStrategies.fixed_delay_restart(-1, 0),
        lambda: RestartStrategies.exponential_delay_restart(100, 10),
        lambda: RestartStrategies.exponential_delay_restart(10, 100, backoff_multiplier=0.5),
        lambda: RestartStrategies.failure_rate_restart(0, 1000, 0),
    ],
)
def test_invalid_settings_are_rejected(make: object) -> None:
    with pytest.raises(InvalidJobError):
        make()  # type: ignore[operator]
