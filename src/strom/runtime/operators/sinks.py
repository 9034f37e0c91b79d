"""Tails of sink chains: one drives a batch ``SinkWriter``, one calls a user's
``SinkFunction.invoke`` per record."""

from __future__ import annotations

from typing import Any

from strom.connectors.base import Sink, SinkWriter, WriterContext
from strom.functions import SinkContext, SinkFunction
from strom.runtime.operators.base import StreamOperator


class SinkWriterOperator(StreamOperator):
    counts_records_in = True

    def __init__(self, name: str, sink: Sink[Any]) -> None:
        super().__init__(name)
        self.sink = sink
        self._restored: list[Any] | None = None

    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        super().initialize_state(snapshots)
        if snapshots is not None:
            entries = [e for s in snapshots for e in s.get("writer", [])]
            self._restored = entries[self.ctx.subtask_index :: self.ctx.parallelism]

    def open(self) -> None:
        ctx = self.ctx
        self.writer: SinkWriter[Any] = self.sink.create_writer(
            WriterContext(**self.connector_context())
        )
        self.writer.open(self._restored)
        self._records_in = ctx.metrics.counter("records_in")

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._records_in.count += len(values)
        self.writer.write(values, timestamps)

    def end_input(self) -> None:
        self.writer.flush(True)

    def prepare_snapshot(self, checkpoint_id: int) -> None:
        self.writer.flush(False)

    def snapshot_state(self, checkpoint_id: int, timestamp: int) -> dict[str, Any]:
        snap = super().snapshot_state(checkpoint_id, timestamp)
        snap["writer"] = list(self.writer.snapshot_state(checkpoint_id))
        return snap

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.writer.notify_checkpoint_complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self.writer.notify_checkpoint_aborted(checkpoint_id)

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


class _InvokeContext(SinkContext):
    __slots__ = ("_op", "ts")

    def __init__(self, op: StreamOperator) -> None:
        self._op = op
        self.ts: int | None = None

    def current_processing_time(self) -> int:
        return self._op.ctx.processing_time()

    def current_watermark(self) -> int:
        return self._op.ctx.current_watermark()

    def timestamp(self) -> int | None:
        return self.ts


class SinkFunctionOperator(StreamOperator):
    counts_records_in = True

    def open(self) -> None:
        super().open()
        fn: SinkFunction[Any] = self.function
        self._invoke = fn.invoke
        self._sctx = _InvokeContext(self)
        self._records_in = self.ctx.metrics.counter("records_in")

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        invoke, ctx = self._invoke, self._sctx
        self._records_in.count += len(values)
        v: Any = ...
        try:
            if timestamps is None:
                for v in values:
                    invoke(v, ctx)
            else:
                for v, t in zip(values, timestamps, strict=True):
                    ctx.ts = t
                    invoke(v, ctx)
        except Exception as e:
            raise self.fail(e, v) from e

    def end_input(self) -> None:
        fn: SinkFunction[Any] = self.function
        fn.finish()
