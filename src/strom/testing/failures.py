"""Failure injection: make a job crash at a chosen record, exactly once.

Fault-tolerance tests need a crash that happens at a known point and does not happen again
after the job recovers, or the job would fail forever. ``FailOnce`` is an identity map function
that raises ``InjectedFailure`` when its subtask sees its ``at_record``-th record::

    env.from_collection(range(100)).map(fail_once_at(50)).name("crash here").sink_to(sink)

"Once" holds across subtasks and across restarts of the job: the runtime deep-copies a
function for every subtask (and again on every restart), but all copies share one flag, so
whichever copy fails first disarms the others.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, TypeVar

from strom.functions import MapFunction, RuntimeContext

__all__ = ["FailOnce", "InjectedFailure", "fail_once_at"]

T = TypeVar("T")


class InjectedFailure(Exception):
    """The failure ``FailOnce`` raises (unless it was given another exception)."""


class _Trigger:
    """Fired at most once; shared by every copy of the ``FailOnce`` that owns it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = False

    def claim(self) -> bool:
        """True for the first caller only."""
        with self._lock:
            if self._fired:
                return False
            self._fired = True
            return True

    @property
    def fired(self) -> bool:
        with self._lock:
            return self._fired

    def reset(self) -> None:
        with self._lock:
            self._fired = False

    def __copy__(self) -> _Trigger:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Trigger:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"fired": self.fired}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._fired = state["fired"]


class FailOnce(MapFunction[T, T]):
    """An identity map that raises once, when its subtask sees record number ``at_record``.

    Records are counted per subtask from 1; the ``at_record - 1`` records before the failing
    one pass through unchanged. The first subtask to reach the count fails; after that (in any
    subtask, or after a restart of the job) the function only passes records on.

    Args:
        at_record: the 1-based number of the record to fail on, within one subtask.
        exception: what to raise: an exception class (instantiated with a message saying where)
            or an instance (raised as is). ``InjectedFailure`` by default.
    """

    def __init__(
        self,
        at_record: int,
        exception: type[BaseException] | BaseException = InjectedFailure,
    ) -> None:
        if isinstance(at_record, bool) or not isinstance(at_record, int) or at_record < 1:
            raise ValueError(f"at_record must be an int >= 1, got {at_record!r}")
        if not (
            isinstance(exception, BaseException)
            or (isinstance(exception, type) and issubclass(exception, BaseException))
        ):
            raise TypeError(f"exception must be an exception class or instance, got {exception!r}")
        self.at_record = at_record
        self.exception = exception
        self._trigger = _Trigger()
        self._seen = 0
        self._subtask = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        # Count from zero in every (re)started subtask: "the n-th record this subtask sees".
        self._seen = 0
        self._subtask = runtime_context.get_index_of_this_subtask()

    def map(self, value: T) -> T:
        self._seen += 1
        if self._seen == self.at_record and self._trigger.claim():
            raise self._make_exception()
        return value

    def _make_exception(self) -> BaseException:
        exc = self.exception
        if isinstance(exc, BaseException):
            return exc
        return exc(f"injected failure at record {self.at_record} of subtask {self._subtask}")

    @property
    def has_failed(self) -> bool:
        """True once any copy of this function has raised."""
        return self._trigger.fired

    def reset(self) -> None:
        """Arm the failure again (for reusing one instance in several tests)."""
        self._trigger.reset()

    def __deepcopy__(self, memo: dict[int, Any]) -> FailOnce[T]:
        # Per-subtask copies count their own records but share the trigger (whose own
        # __deepcopy__ returns itself); the exception instance is shared too, so an instance
        # given by the test is the one raised.
        twin: FailOnce[T] = FailOnce.__new__(type(self))
        memo[id(self)] = twin
        memo[id(self.exception)] = self.exception
        twin.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return twin

    def __repr__(self) -> str:
        state = "fired" if self.has_failed else "armed"
        return f"FailOnce(at_record={self.at_record}, {state})"


def fail_once_at(
    n: int, exception: type[BaseException] | BaseException = InjectedFailure
) -> FailOnce[Any]:
    """A ``FailOnce(n, exception)``: ``stream.map(fail_once_at(100))`` crashes once at record 100
    of a subtask."""
    return FailOnce(n, exception)
