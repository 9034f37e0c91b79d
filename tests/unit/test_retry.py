"""Unit tests for strom.connectors.base.retry: backoff schedules and RetryPolicy.call.

No test sleeps for real: every call passes a recording fake ``sleep``.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from typing import Any

import pytest

from strom.connectors.base.retry import (
    Backoff,
    ConstantBackoff,
    ExponentialBackoff,
    NoBackoff,
    RetriesExhausted,
    RetryPolicy,
)


class Flaky:
    """Fails with the given errors in turn, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# -- backoff ------------------------------------------------------------------------------------


def test_no_backoff_is_zero() -> None:
    assert [NoBackoff().compute(n) for n in (1, 2, 100)] == [0.0, 0.0, 0.0]


def test_constant_backoff() -> None:
    assert [ConstantBackoff(0.5).compute(n) for n in (1, 2, 50)] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("delay", [-0.1, float("nan"), float("inf")])
def test_constant_backoff_rejects_bad_delay(delay: float) -> None:
    with pytest.raises(ValueError, match="delay must be"):
        ConstantBackoff(delay)


def test_exponential_backoff_grows_then_caps() -> None:
    backoff = ExponentialBackoff(initial=0.1, maximum=1.0, multiplier=2.0)
    delays = [backoff.compute(n) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_exponential_backoff_huge_attempt_does_not_overflow() -> None:
    assert ExponentialBackoff(initial=1.0, maximum=30.0).compute(100_000) == 30.0


def test_exponential_backoff_jitter_only_shortens() -> None:
    high = ExponentialBackoff(initial=1.0, maximum=8.0, jitter=0.5, rng=lambda: 0.0)
    low = ExponentialBackoff(initial=1.0, maximum=8.0, jitter=0.5, rng=lambda: 0.999999)
    assert high.compute(4) == pytest.approx(8.0)
    assert low.compute(4) == pytest.approx(4.0, rel=1e-3)


def test_exponential_backoff_default_jitter_stays_in_range() -> None:
    backoff = ExponentialBackoff(initial=1.0, maximum=1.0, jitter=0.25)
    for _ in range(200):
        assert 0.75 <= backoff.compute(1) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -1.0}, "initial must be"),
        ({"maximum": -1.0}, "maximum must be"),
        ({"initial": 5.0, "maximum": 1.0}, r"maximum \(1.0\) must be >= initial"),
        ({"multiplier": 0.5}, "multiplier must be"),
        ({"multiplier": -2.0}, "multiplier must be"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_exponential_backoff_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExponentialBackoff(**kwargs)


@pytest.mark.parametrize("backoff", [NoBackoff(), ConstantBackoff(1.0), ExponentialBackoff()])
def test_attempt_numbers_start_at_one(backoff: Backoff) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        backoff.compute(0)


def test_backoffs_are_immutable_values() -> None:
    backoff = ExponentialBackoff(initial=0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.initial = 1.0  # type: ignore[misc]
    assert backoff == ExponentialBackoff(initial=0.2, rng=lambda: 0.5)
    assert ConstantBackoff(1.0) == ConstantBackoff(1.0)
    assert hash(ConstantBackoff(1.0)) == hash(ConstantBackoff(1.0))


# -- RetryPolicy.call ---------------------------------------------------------------------------


def test_success_first_time_does_not_sleep() -> None:
    sleep = FakeSleep()
    fn = Flaky()
    assert RetryPolicy(3, ConstantBackoff(1.0)).call(fn, sleep=sleep) == "ok"
    assert fn.calls == 1
    assert sleep.waits == []


def test_retries_then_succeeds_with_backoff_and_on_retry() -> None:
    sleep = FakeSleep()
    seen: list[tuple[int, str, float]] = []
    first, second = ConnectionRefusedError("refused"), TimeoutError("slow")
    fn = Flaky(first, second, result="done")
    policy = RetryPolicy(5, ExponentialBackoff(initial=0.5, maximum=10.0))

    result = policy.call(fn, sleep=sleep, on_retry=lambda n, e, d: seen.append((n, str(e), d)))

    assert result == "done"
    assert fn.calls == 3
    assert sleep.waits == [0.5, 1.0]
    assert seen == [(1, "refused", 0.5), (2, "slow", 1.0)]


def test_exhausted_raises_with_attempts_and_cause() -> None:
    sleep = FakeSleep()
    last = ConnectionResetError("peer reset")
    fn = Flaky(OSError("a"), OSError("b"), last, OSError("never reached"))

    with pytest.raises(RetriesExhausted) as info:
        RetryPolicy(3, ConstantBackoff(0.25)).call(fn, sleep=sleep)

    assert info.value.attempts == 3
    assert info.value.__cause__ is last
    assert info.value.last_error is last
    assert "3 attempts" in str(info.value)
    assert "ConnectionResetError: peer reset" in str(info.value)
    assert fn.calls == 3
    assert sleep.waits == [0.25, 0.25]


def test_single_attempt_never_sleeps() -> None:
    sleep = FakeSleep()
    with pytest.raises(RetriesExhausted, match="after 1 attempt;"):
        RetryPolicy(1, ConstantBackoff(1.0)).call(Flaky(OSError("x")), sleep=sleep)
    assert sleep.waits == []


def test_unlisted_error_propagates_at_once() -> None:
    sleep = FakeSleep()
    fn = Flaky(ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        RetryPolicy(5, ConstantBackoff(1.0)).call(fn, sleep=sleep)
    assert fn.calls == 1
    assert sleep.waits == []


def test_retry_on_is_respected() -> None:
    fn = Flaky(KeyError("k"), result="ok")
    policy = RetryPolicy(2, NoBackoff(), retry_on=(KeyError,))
    assert policy.call(fn, sleep=FakeSleep()) == "ok"
    with pytest.raises(OSError, match="not retried"):
        policy.call(Flaky(OSError("not retried")), sleep=FakeSleep())


def test_forever_keeps_going() -> None:
    sleep = FakeSleep()
    fn = Flaky(*[OSError(str(n)) for n in range(500)])
    assert RetryPolicy(None, ExponentialBackoff(maximum=2.0)).call(fn, sleep=sleep) == "ok"
    assert fn.calls == 501
    assert len(sleep.waits) == 500
    assert max(sleep.waits) == 2.0


def test_should_stop_before_sleep_reraises_last_error() -> None:
    sleep = FakeSleep()
    error = OSError("down")
    fn = Flaky(error, error, error)
    with pytest.raises(OSError, match="down") as info:
        RetryPolicy(None, ConstantBackoff(1.0)).call(fn, sleep=sleep, should_stop=lambda: True)
    assert info.value is error
    assert fn.calls == 1
    assert sleep.waits == []


def test_should_stop_during_sleep_skips_next_attempt() -> None:
    stopped = False

    def sleep(seconds: float) -> None:
        nonlocal stopped
        stopped = True

    fn = Flaky(OSError("first"), OSError("second"))
    with pytest.raises(OSError, match="first"):
        RetryPolicy(None, ConstantBackoff(1.0)).call(fn, sleep=sleep, should_stop=lambda: stopped)
    assert fn.calls == 1


def test_should_stop_is_not_consulted_before_first_attempt() -> None:
    assert RetryPolicy(3, NoBackoff()).call(Flaky(), should_stop=lambda: True) == "ok"


def test_custom_backoff_satisfies_protocol() -> None:
    class Linear:
        def compute(self, attempt: int) -> float:
            return attempt * 0.1

    sleep = FakeSleep()
    RetryPolicy(4, Linear()).call(Flaky(OSError(), OSError(), OSError()), sleep=sleep)
    assert sleep.waits == pytest.approx([0.1, 0.2, 0.3])


# -- RetryPolicy construction and delays() ------------------------------------------------------


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_must_be_positive(attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RetryPolicy(attempts, NoBackoff())


def test_retry_on_must_be_a_tuple_of_exception_classes() -> None:
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy(3, NoBackoff(), retry_on=OSError)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy(3, NoBackoff(), retry_on=(OSError, int))  # type: ignore[arg-type]


def test_backoff_must_have_compute() -> None:
    with pytest.raises(TypeError, match="backoff"):
        RetryPolicy(3, 1.0)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = RetryPolicy(3, NoBackoff())
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 4  # type: ignore[misc]


def test_delays_finite_matches_call() -> None:
    policy = RetryPolicy(4, ExponentialBackoff(initial=1.0, maximum=3.0))
    assert list(policy.delays()) == [1.0, 2.0, 3.0]
    sleep = FakeSleep()
    with pytest.raises(RetriesExhausted):
        policy.call(Flaky(*[OSError()] * 4), sleep=sleep)
    assert sleep.waits == list(policy.delays())


def test_delays_single_attempt_and_forever() -> None:
    assert list(RetryPolicy(1, ConstantBackoff(1.0)).delays()) == []
    forever = RetryPolicy(None, ConstantBackoff(0.5)).delays()
    assert list(itertools.islice(forever, 1000)) == [0.5] * 1000


def test_retries_exhausted_pickles() -> None:
    original = RetriesExhausted(7, ConnectionRefusedError("nope"))
    copy = pickle.loads(pickle.dumps(original))
    assert isinstance(copy, RetriesExhausted)
    assert copy.attempts == 7
    assert str(copy) == str(original)
    assert isinstance(copy.__cause__, ConnectionRefusedError)
