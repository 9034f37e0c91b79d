"""Retry policies and backoff schedules for connectors that talk to flaky external systems.

Connectors reconnect, resend and re-poll; this module gives them one vocabulary for *how often*
and *how long to wait*, as small immutable values that can sit in a connector's configuration,
be compared, and be tested without real waiting (``RetryPolicy.call`` takes the ``sleep`` to use).

::

    policy = RetryPolicy(max_attempts=5, backoff=ExponentialBackoff(initial=0.1, jitter=0.2))
    sock = policy.call(lambda: socket.create_connection(addr), should_stop=stopping.is_set)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

__all__ = [
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "NoBackoff",
    "RetriesExhausted",
    "RetryPolicy",
]

T = TypeVar("T")


def _check_attempt(attempt: int) -> None:
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")


def _check_delay(name: str, value: float) -> None:
    # Written as "not >= 0" so that NaN, which compares false to everything, is rejected too.
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@runtime_checkable
class Backoff(Protocol):
    """How long to wait after a failed attempt before the next one."""

    def compute(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (the first attempt is 1)."""
        ...


@dataclass(frozen=True)
class NoBackoff:
    """Retry immediately."""

    def compute(self, attempt: int) -> float:
        _check_attempt(attempt)
        return 0.0


@dataclass(frozen=True)
class ConstantBackoff:
    """Wait the same ``delay`` seconds after every failed attempt."""

    delay: float

    def __post_init__(self) -> None:
        _check_delay("delay", self.delay)

    def compute(self, attempt: int) -> float:
        _check_attempt(attempt)
        return float(self.delay)


@dataclass(frozen=True)
class ExponentialBackoff:
    """Wait ``initial * multiplier ** (attempt - 1)`` seconds, capped at ``maximum``.

    ``jitter`` is a fraction in ``[0, 1]``: each delay is drawn uniformly from
    ``[delay * (1 - jitter), delay]``. Jitter only ever shortens the delay, so ``maximum`` stays a
    hard cap, and many clients that failed together do not all come back at the same instant.
    ``rng`` returns floats in ``[0, 1)``; tests pass a fixed one.
    """

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.0
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        _check_delay("initial", self.initial)
        _check_delay("maximum", self.maximum)
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum!r}) must be >= initial ({self.initial!r})",
            )
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            # A multiplier below 1 would shrink the delay after every failure: almost surely a
            # typo, and the opposite of backing off.
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction and must be within [0, 1], got {self.jitter!r}")

    def compute(self, attempt: int) -> float:
        _check_attempt(attempt)
        try:
            delay = self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:
            # Long-running "retry forever" loops reach attempt numbers where the power no longer
            # fits in a float; by then the cap applies anyway.
            delay = self.maximum
        delay = min(delay, self.maximum)
        if self.jitter:
            delay -= delay * self.jitter * self.rng()
        return delay


class RetriesExhausted(Exception):
    """Every attempt a ``RetryPolicy`` allowed has failed.

    ``attempts`` is how many were made; the last attempt's error is ``last_error`` and is also
    chained as ``__cause__``, so the traceback shows what actually went wrong.
    """

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}; "
            f"last error: {type(last_error).__name__}: {last_error}",
        )
        self.attempts = attempts
        self.last_error = last_error
        self.__cause__ = last_error

    def __reduce__(self) -> tuple[type[RetriesExhausted], tuple[int, BaseException]]:
        # The default pickling would call __init__ with the formatted message only; errors cross
        # process boundaries in a distributed job, so keep them reconstructible.
        return (type(self), (self.attempts, self.last_error))


@dataclass(frozen=True)
class RetryPolicy:
    """Run an operation again when it fails with one of ``retry_on``, waiting per ``backoff``.

    ``max_attempts`` counts all attempts including the first; ``None`` retries forever (pair it
    with ``should_stop`` so a cancelled task does not spin for ever). Errors not listed in
    ``retry_on`` propagate at once: retrying a bug only delays the report.
    """

    max_attempts: int | None
    backoff: Backoff
    retry_on: tuple[type[BaseException], ...] = (OSError,)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be >= 1 (or None to retry forever), got {self.max_attempts!r}",
            )
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"backoff must have a compute(attempt) method, got {self.backoff!r}")
        # `except` accepts a bare class too, so a missing tuple would work by accident until
        # someone passes a list; insist on the declared shape up front.
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise TypeError(
                f"retry_on must be a tuple of exception classes, got {self.retry_on!r}",
            )

    def delays(self) -> Iterator[float]:
        """The waits between attempts, in order: one fewer than ``max_attempts``, or endless."""
        attempt = 1
        while self.max_attempts is None or attempt < self.max_attempts:
            yield self.backoff.compute(attempt)
            attempt += 1

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: Callable[[int, BaseException, float], object] | None = None,
        sleep: Callable[[float], object] = time.sleep,
        should_stop: Callable[[], bool] | None = None,
    ) -> T:
        """Return ``fn()``, retrying it on ``retry_on`` errors.

        ``on_retry(attempt, error, delay)`` runs before each wait (for logging and metrics).
        ``sleep`` does the waiting; pass ``stop_event.wait`` to make waits end as soon as the
        task is asked to stop. ``should_stop`` is consulted before and after each wait; once it
        returns true the last error is re-raised as is. When ``max_attempts`` attempts have all
        failed, ``RetriesExhausted`` is raised with the last error as its cause.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except self.retry_on as exc:
                last_error = exc
            if self.max_attempts is not None and attempt >= self.max_attempts:
                raise RetriesExhausted(attempt, last_error) from last_error
            if should_stop is not None and should_stop():
                raise last_error
            delay = self.backoff.compute(attempt)
            if on_retry is not None:
                on_retry(attempt, last_error, delay)
            sleep(delay)
            if should_stop is not None and should_stop():
                raise last_error
