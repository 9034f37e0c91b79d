"""Heads of source tasks: one drives a pull-based ``SourceReader``, one runs a user's
``SourceFunction`` (push-style) under a checkpoint lock.

Both take checkpoints only between batches: the reader loop checks the task's mailbox before
every ``poll``; the ``SourceFunction`` driver flushes and snapshots while holding the
checkpoint lock, from a helper thread, so a ``run`` that holds the lock while it emits and
advances its position is always snapshotted consistently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from strom.connectors.base import Batch, ReaderContext, Source, SourceReader
from strom.eventtime import WatermarkStrategy
from strom.functions import SourceCancelled, SourceContext, SourceFunction
from strom.runtime.operators.base import StreamOperator
from strom.runtime.operators.timestamps import WatermarkEmitter


class SourceHost(Protocol):
    """What a source head needs from its task."""

    batch_size: int
    flush_interval: float

    @property
    def cancelled(self) -> bool: ...

    def process_mailbox(self) -> None: ...

    def tick(self) -> None: ...

    def wait_mailbox(self, timeout: float) -> bool: ...


class SourceOperator(StreamOperator):
    def run(self, host: SourceHost) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """Called from another thread: make ``run`` return soon."""


class SourceReaderOperator(SourceOperator):
    def __init__(
        self,
        name: str,
        source: Source[Any],
        watermark_strategy: WatermarkStrategy | None = None,
        watermark_interval_ms: int = 200,
    ) -> None:
        super().__init__(name)
        self.source = source
        self.watermark_strategy = watermark_strategy
        self.watermark_interval_ms = watermark_interval_ms
        self.uses_ticks = watermark_strategy is not None
        self._restored: list[Any] | None = None
        self._watermarks: WatermarkEmitter | None = None

    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        super().initialize_state(snapshots)
        if snapshots is not None:
            self._restored = [entry for s in snapshots for entry in s.get("reader", [])]

    def open(self) -> None:
        self.reader: SourceReader[Any] = self.source.create_reader(
            ReaderContext(**self.connector_context())
        )
        self.reader.open(self._restored)
        if self.watermark_strategy is not None:
            self._watermarks = WatermarkEmitter(
                self.watermark_strategy,
                self.output,
                self.ctx.processing_time,
                self.watermark_interval_ms,
                self.name,
            )

    def run(self, host: SourceHost) -> None:
        reader, emit, size = self.reader, self.output.emit, host.batch_size
        counter = self.ctx.metrics.counter("records_out")
        watermarks = self._watermarks
        while not host.cancelled:
            host.process_mailbox()
            try:
                batch = reader.poll(size)
            except Exception as e:
                raise self.fail(e) from e
            if batch is None:
                return
            if type(batch) is list:
                values, timestamps, split = batch, None, None
            elif isinstance(batch, Batch):
                values, timestamps, split = batch.values, batch.timestamps, batch.split
            else:
                raise TypeError(
                    f"{type(reader).__name__}.poll returned {type(batch).__name__}; "
                    "expected a list, a Batch or None"
                )
            if values:
                counter.count += len(values)
                if watermarks is not None:
                    declared = reader.active_splits()
                    if declared:
                        watermarks.declare_splits(declared)
                    timestamps = watermarks.assign(split, values, timestamps)
                    emit(values, timestamps)
                    watermarks.after_batch()
                else:
                    emit(values, timestamps)
            host.tick()

    def tick(self, now_ms: int) -> None:
        if self._watermarks is not None:
            self._watermarks.tick(now_ms, self.reader.is_idle())

    def cancel(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.wakeup()

    def snapshot_state(self, checkpoint_id: int, timestamp: int) -> dict[str, Any]:
        snap = super().snapshot_state(checkpoint_id, timestamp)
        snap["reader"] = list(self.reader.snapshot_state(checkpoint_id))
        return snap

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.reader.notify_checkpoint_complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self.reader.notify_checkpoint_aborted(checkpoint_id)

    def close(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()


class _FunctionSourceContext(SourceContext[Any]):
    def __init__(self, op: SourceFunctionOperator, host: SourceHost) -> None:
        self._op = op
        self._host = host
        self.lock = threading.RLock()
        self._values: list[Any] = []
        self._timestamps: list[int] | None = None
        self._size = host.batch_size
        self.broken: BaseException | None = None
        """Set (under the lock) when emitting failed: from then on nothing may be emitted or
        snapshotted — a checkpoint now would record a half-processed batch as done."""

    def _check(self) -> None:
        if self.broken is not None:
            raise self.broken
        if self._host.cancelled:
            raise SourceCancelled()

    def collect(self, element: Any) -> None:
        self._check()
        with self.lock:
            if self._timestamps is not None:
                self.flush()
            self._values.append(element)
            if len(self._values) >= self._size:
                self.flush()

    def collect_with_timestamp(self, element: Any, timestamp: int) -> None:
        self._check()
        with self.lock:
            if self._timestamps is None:
                self.flush()
                self._timestamps = []
            self._values.append(element)
            self._timestamps.append(int(timestamp))
            if len(self._values) >= self._size:
                self.flush()

    def emit_watermark(self, watermark: int) -> None:
        self._check()
        with self.lock:
            self.flush()
            try:
                self._op.output.emit_watermark(int(watermark))
            except BaseException as e:
                self.broken = e
                raise

    def mark_as_temporarily_idle(self) -> None:
        with self.lock:
            self.flush()

    def get_checkpoint_lock(self) -> threading.RLock:
        return self.lock

    def is_cancelled(self) -> bool:
        return self._host.cancelled

    def flush(self) -> None:
        """Emit buffered records downstream; call with the lock held."""
        values, timestamps = self._values, self._timestamps
        if not values:
            self._timestamps = None
            return
        self._values = []
        self._timestamps = None
        self._op.ctx.metrics.counter("records_out").inc(len(values))
        try:
            self._op.output.emit(values, timestamps)
        except BaseException as e:
            self.broken = e  # set while the lock is still held: no checkpoint can slip in
            raise


class SourceFunctionOperator(SourceOperator):
    """Runs ``SourceFunction.run(ctx)`` in the task thread; a helper thread flushes partial
    batches every ``flush_interval`` and runs checkpoints, both under the checkpoint lock."""

    def __init__(self, name: str, function: SourceFunction[Any]) -> None:
        super().__init__(name, function)
        self._failure: BaseException | None = None

    def run(self, host: SourceHost) -> None:
        fn: SourceFunction[Any] = self.function
        ctx = _FunctionSourceContext(self, host)
        done = threading.Event()
        helper = threading.Thread(
            target=self._helper_loop,
            args=(host, ctx, done),
            name=f"{self.name}[{self.ctx.subtask_index}]-mailbox",
            daemon=True,
        )
        helper.start()
        try:
            fn.run(ctx)
        except SourceCancelled:
            if not host.cancelled:
                raise
        finally:
            done.set()
            helper.join()
        if self._failure is not None:
            raise self._failure
        if ctx.broken is not None:
            raise ctx.broken  # run() swallowed the error collect() raised: still a failure
        if host.cancelled:
            return
        with ctx.lock:
            ctx.flush()
            host.process_mailbox()

    def _helper_loop(
        self, host: SourceHost, ctx: _FunctionSourceContext, done: threading.Event
    ) -> None:
        try:
            while not done.is_set() and not host.cancelled:
                host.wait_mailbox(host.flush_interval)
                with ctx.lock:
                    if ctx.broken is not None:
                        return  # run() reports it; never checkpoint a failed chain
                    ctx.flush()
                    host.process_mailbox()
                    host.tick()
        except BaseException as e:  # reported by run(); cancel so the user's loop stops
            self._failure = e
            self.cancel()

    def cancel(self) -> None:
        fn: SourceFunction[Any] = self.function
        fn.cancel()


SourceFactory = Callable[[], SourceOperator]
