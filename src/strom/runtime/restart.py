"""Restart strategies (PyFlink's ``RestartStrategies``): whether and when a failed job restarts.

A strategy is a small value object; the executor asks ``next_delay(now)`` after each failure
and either waits that long and restores from the latest completed checkpoint, or gives up.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from strom.errors import InvalidJobError


class RestartStrategy(ABC):
    @abstractmethod
    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up. ``now`` is monotonic."""

    def describe(self) -> str:
        return type(self).__name__


@dataclass
class NoRestart(RestartStrategy):
    def next_delay(self, now: float) -> float | None:
        return None


@dataclass
class FixedDelayRestart(RestartStrategy):
    attempts: int
    delay_s: float
    _used: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.delay_s < 0:
            raise InvalidJobError("fixed delay restart needs attempts >= 0 and delay >= 0")

    def next_delay(self, now: float) -> float | None:
        if self._used >= self.attempts:
            return None
        self._used += 1
        return self.delay_s


@dataclass
class ExponentialDelayRestart(RestartStrategy):
    """Delay doubles (``multiplier``) per failure up to ``max_delay_s``; it resets to the
    initial delay after ``reset_after_s`` without failures. ``jitter`` spreads restarts."""

    initial_delay_s: float
    max_delay_s: float
    multiplier: float = 2.0
    reset_after_s: float = 3600.0
    jitter: float = 0.0
    attempts: int | None = None
    _current: float = field(default=0.0, repr=False)
    _last_failure: float | None = field(default=None, repr=False)
    _used: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise InvalidJobError("exponential delay needs 0 <= initial delay <= max delay")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise InvalidJobError("exponential delay needs multiplier >= 1 and 0 <= jitter <= 1")

    def next_delay(self, now: float) -> float | None:
        if self.attempts is not None and self._used >= self.attempts:
            return None
        self._used += 1
        if self._last_failure is None or now - self._last_failure > self.reset_after_s:
            self._current = self.initial_delay_s
        else:
            self._current = min(self.max_delay_s, max(self._current, 1e-3) * self.multiplier)
        self._last_failure = now
        delay = self._current
        if self.jitter:
            delay *= 1 - self.jitter * random.random()
        return delay


@dataclass
class FailureRateRestart(RestartStrategy):
    """Restart unless more than ``max_failures`` happened within ``interval_s``."""

    max_failures: int
    interval_s: float
    delay_s: float
    _failures: deque[float] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.interval_s <= 0 or self.delay_s < 0:
            raise InvalidJobError("failure rate restart needs max failures >= 1, interval > 0")

    def next_delay(self, now: float) -> float | None:
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.interval_s:
            self._failures.popleft()
        if len(self._failures) > self.max_failures:
            return None
        return self.delay_s


class RestartStrategies:
    """Factory methods with PyFlink's names; delays in milliseconds."""

    @staticmethod
    def no_restart() -> RestartStrategy:
        return NoRestart()

    @staticmethod
    def fixed_delay_restart(restart_attempts: int, delay_between_attempts: int) -> RestartStrategy:
        return FixedDelayRestart(restart_attempts, delay_between_attempts / 1000)

    @staticmethod
    def exponential_delay_restart(
        initial_backoff_ms: int,
        max_backoff_ms: int,
        backoff_multiplier: float = 2.0,
        reset_backoff_threshold_ms: int = 3_600_000,
        jitter_factor: float = 0.1,
        attempts: int | None = None,
    ) -> RestartStrategy:
        return ExponentialDelayRestart(
            initial_backoff_ms / 1000,
            max_backoff_ms / 1000,
            backoff_multiplier,
            reset_backoff_threshold_ms / 1000,
            jitter_factor,
            attempts,
        )

    @staticmethod
    def failure_rate_restart(
        failure_rate: int, failure_interval: int, delay_interval: int
    ) -> RestartStrategy:
        return FailureRateRestart(failure_rate, failure_interval / 1000, delay_interval / 1000)
