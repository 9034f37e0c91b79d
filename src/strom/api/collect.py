"""``execute_and_collect``: a sink that hands records to an iterator in the calling thread."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.runtime.job import JobClient

T = TypeVar("T")
_END = object()


class CollectSink(Sink[T]):
    """Puts batches on a bounded queue the iterator reads (backpressure reaches the job)."""

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_MOST_ONCE}
    )

    def __init__(self, capacity: int = 64) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(capacity)
        self.closed = threading.Event()

    def create_writer(self, ctx: WriterContext) -> SinkWriter[T]:
        return _CollectWriter(self)


class _CollectWriter(SinkWriter[T]):
    def __init__(self, sink: CollectSink[T]) -> None:
        self._sink = sink

    def write(self, values: list[T], timestamps: list[int] | None) -> None:
        q, closed = self._sink.queue, self._sink.closed
        while not closed.is_set():
            try:
                q.put(values, timeout=0.1)
                return
            except queue.Full:
                continue


class CloseableIterator(Iterator[T], Generic[T]):
    """Iterates the results of a running job; ``close()`` (or leaving a ``with`` block)
    cancels the job if it is still running. A failure of the job is raised from ``next``."""

    def __init__(self, client: JobClient, sink: CollectSink[T]) -> None:
        self._client = client
        self._sink = sink
        self._buffer: deque[T] = deque()
        self._finished = False

    def __iter__(self) -> CloseableIterator[T]:
        return self

    def __next__(self) -> T:
        while not self._buffer:
            if self._finished:
                raise StopIteration
            try:
                self._buffer.extend(self._sink.queue.get(timeout=0.05))
            except queue.Empty:
                if self._client.get_job_status().is_terminal:
                    self._drain()
                    self._finished = True
                    self._client.wait()  # raises the job's failure, if any
        return self._buffer.popleft()

    def _drain(self) -> None:
        while True:
            try:
                self._buffer.extend(self._sink.queue.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        self._finished = True
        self._sink.closed.set()
        if not self._client.get_job_status().is_terminal:
            self._client.cancel()
            try:
                self._client.wait()
            except Exception:  # cancelling our own job is how we stop; its error is expected
                pass

    def __enter__(self) -> CloseableIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
