"""Sinks that collect a job's output in a list the test can assert on.

- ``TestingSink`` is a batch ``Sink`` (``stream.sink_to(sink)``);
- ``CollectingSinkFunction`` is a per-record ``SinkFunction`` (``stream.add_sink(fn)``), for
  jobs or tests built around the seed's ``invoke`` API.

Every subtask of the sink appends to one shared, thread-safe store, so ``results`` holds the
whole job's output. The runtime deep-copies function objects once per subtask (and again on a
restart), so the store is shared *by reference* through copies: ``copy.deepcopy`` of either
sink yields an object that writes into the same list. The store does not survive pickling into
another process; these sinks are for jobs running in the test's process.

Both are at-least-once: after a restart, records replayed from the last checkpoint are appended
again. The list is never cleared between runs (``clear()`` does that).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.functions import SinkContext, SinkFunction

__all__ = ["CollectingSinkFunction", "TestingSink"]

T = TypeVar("T")


class _SharedStore(Generic[T]):
    """Records and their timestamps, appended to under one lock from any thread.

    ``copy``/``deepcopy`` return the store itself: that is what lets the per-subtask copies
    the runtime makes of a sink write into the list the test holds.
    """

    def __init__(self, results: list[T]) -> None:
        self.lock = threading.Lock()
        self.results = results
        self.timestamps: list[int | None] = []

    def extend(self, values: list[T], timestamps: list[int] | None) -> None:
        with self.lock:
            self.results.extend(values)
            self.timestamps.extend(timestamps if timestamps is not None else [None] * len(values))

    def append(self, value: T, timestamp: int | None) -> None:
        with self.lock:
            self.results.append(value)
            self.timestamps.append(timestamp)

    def clear(self) -> None:
        with self.lock:
            self.results.clear()
            self.timestamps.clear()

    def __copy__(self) -> _SharedStore[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedStore[T]:
        return self

    # A lock cannot be pickled; a pickled store is a snapshot of the records, no longer shared.
    def __getstate__(self) -> dict[str, Any]:
        return {"results": self.results, "timestamps": self.timestamps}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.results = state["results"]
        self.timestamps = state["timestamps"]


class _CollectorMixin(Generic[T]):
    _store: _SharedStore[T]

    @property
    def results(self) -> list[T]:
        """The collected records: the very list passed to the constructor, if one was."""
        return self._store.results

    @property
    def timestamps(self) -> list[int | None]:
        """Event-time timestamp of each record in ``results`` (None where it had none)."""
        return self._store.timestamps

    def clear(self) -> None:
        """Forget everything collected so far (e.g. between two runs of a job)."""
        self._store.clear()


class TestingSink(_CollectorMixin[T], Sink[T]):
    """A batch sink appending every record to ``results``. Guarantee: at-least-once.

    ::

        sink = TestingSink()
        env.from_collection([1, 2, 3]).map(lambda x: x * 10).sink_to(sink)
        env.execute()
        assert sorted(sink.results) == [10, 20, 30]

    Args:
        result: the list to append to (it is ``results``); a new one if omitted.
    """

    __test__ = False  # not a pytest test class, despite its name

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_LEAST_ONCE}
    )

    def __init__(self, result: list[T] | None = None) -> None:
        self._store = _SharedStore(result if result is not None else [])

    def create_writer(self, ctx: WriterContext) -> SinkWriter[T]:
        return _StoreWriter(self._store)

    def describe(self) -> str:
        return "TestingSink"


class _StoreWriter(SinkWriter[T]):
    def __init__(self, store: _SharedStore[T]) -> None:
        self._store = store

    def write(self, values: list[T], timestamps: list[int] | None) -> None:
        self._store.extend(values, timestamps)


class CollectingSinkFunction(_CollectorMixin[T], SinkFunction[T]):
    """A ``SinkFunction`` appending every record to ``results``. Guarantee: at-least-once.

    ::

        sink = CollectingSinkFunction()
        env.from_collection([1, 2, 3]).add_sink(sink)
        env.execute()
        assert sorted(sink.results) == [1, 2, 3]

    Args:
        result: the list to append to (it is ``results``); a new one if omitted.
    """

    def __init__(self, result: list[T] | None = None) -> None:
        self._store = _SharedStore(result if result is not None else [])

    def invoke(self, value: T, context: SinkContext) -> None:
        self._store.append(value, context.timestamp())

    def __deepcopy__(self, memo: dict[int, Any]) -> CollectingSinkFunction[T]:
        # Each subtask gets its own function object with its own fields (as with any user
        # function, subclasses included); only the store is shared, by _SharedStore.__deepcopy__.
        twin: CollectingSinkFunction[T] = CollectingSinkFunction.__new__(type(self))
        memo[id(self)] = twin
        twin.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return twin
