"""``ManualClock``: processing time that moves only when a test says so.

Processing time is whatever ``env.set_processing_time_clock(clock)`` returns, in milliseconds.
With the wall clock a test of time-dependent logic is slow (it must really wait) and flaky (the
machine may be slower than the test assumed); with a ``ManualClock`` the test decides exactly
when time passes::

    clock = ManualClock(start_ms=1_000)
    env.set_processing_time_clock(clock)
    ...
    clock.advance(60_000)   # one minute passes, instantly

Like the runtime's clock it never runs backwards: ``advance`` rejects negative steps and ``set``
rejects earlier times, because operators may rely on processing time being monotonic.
"""

from __future__ import annotations

import operator
import threading

__all__ = ["ManualClock"]


class ManualClock:
    """A thread-safe, hand-advanced clock; calling it returns the current time in ms.

    Task threads read it while the test thread advances it, hence the lock.
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self._now = _as_ms("start_ms", start_ms)

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        """Move time forward by ``ms`` milliseconds (>= 0); returns the new time."""
        step = _as_ms("ms", ms)
        if step < 0:
            raise ValueError(f"a clock cannot go backwards: advance({step}) needs ms >= 0")
        with self._lock:
            self._now += step
            return self._now

    def set(self, ms: int) -> int:
        """Jump to ``ms`` (not earlier than now); returns it."""
        target = _as_ms("ms", ms)
        with self._lock:
            if target < self._now:
                raise ValueError(
                    f"a clock cannot go backwards: set({target}) is before now ({self._now})"
                )
            self._now = target
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock(now={self()} ms)"


def _as_ms(name: str, value: int) -> int:
    # Processing time is integral milliseconds everywhere in the runtime; a float (or a bool,
    # which is an int to Python) here is almost certainly a unit mistake, so refuse it early.
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int number of milliseconds, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int number of milliseconds, got {value!r}") from None
