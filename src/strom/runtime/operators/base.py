"""The operator contract and the outputs that connect chained operators.

An operator receives batches (``process_batch(values, timestamps)``) and emits to its
``output``; inside a chain, the output *is* the next operator's ``process_batch``, so records
between chained operators are plain function calls. Exceptions from user code are wrapped in
``OperatorFailure`` naming the operator and the failing record.
"""

from __future__ import annotations

import reprlib
from abc import ABC, abstractmethod
from operator import length_hint
from typing import Any

from strom.functions import CheckpointedFunction, CheckpointListener
from strom.functions.core import close_function, open_function
from strom.runtime.context import (
    InitializationContext,
    OperatorContext,
    SnapshotContext,
    StreamingRuntimeContext,
)
from strom.runtime.keygroups import key_group_range

_short = reprlib.Repr()
_short.maxstring = 120
_short.maxother = 120


def failed_record(values: list[Any], it: Any) -> Any:
    """The record a C-level loop over ``it = iter(values)`` (``map``, ``filter``, ``zip``) was
    processing when the function it called raised: the iterator has advanced exactly past it."""
    index = len(values) - length_hint(it) - 1
    return values[index] if 0 <= index < len(values) else ...


class OperatorFailure(Exception):
    """User code inside an operator raised; carries where, and the record when known."""

    def __init__(self, operator: str, cause: BaseException, record: Any = ...) -> None:
        where = f"operator {operator!r} failed"
        if record is not ...:
            where += f" on record {_short.repr(record)}"
        super().__init__(f"{where}: {type(cause).__name__}: {cause}")
        self.operator = operator
        self.cause = cause


class Output(ABC):
    @abstractmethod
    def emit(self, values: list[Any], timestamps: list[int] | None) -> None: ...

    @abstractmethod
    def emit_watermark(self, watermark: int) -> None: ...

    @abstractmethod
    def emit_watermark_status(self, idle: bool) -> None:
        """Tell downstream this output went idle / became active."""


class ChainedOutput(Output):
    """Hands batches straight to the next operator in the chain."""

    def __init__(self, operator: StreamOperator) -> None:
        self.emit = operator.process_batch  # type: ignore[method-assign]
        self.emit_watermark = operator.process_watermark  # type: ignore[method-assign]
        self.emit_watermark_status = operator.process_watermark_status  # type: ignore[method-assign]

    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        raise AssertionError("replaced in __init__")

    def emit_watermark(self, watermark: int) -> None:
        raise AssertionError("replaced in __init__")

    def emit_watermark_status(self, idle: bool) -> None:
        raise AssertionError("replaced in __init__")


class BroadcastingOutput(Output):
    """Fan-out: several consumers of one operator (chained operators and/or channels)."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs

    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        for out in self.outputs:
            out.emit(values, timestamps)

    def emit_watermark(self, watermark: int) -> None:
        for out in self.outputs:
            out.emit_watermark(watermark)

    def emit_watermark_status(self, idle: bool) -> None:
        for out in self.outputs:
            out.emit_watermark_status(idle)


class NullOutput(Output):
    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        pass

    def emit_watermark(self, watermark: int) -> None:
        pass

    def emit_watermark_status(self, idle: bool) -> None:
        pass


_NULL = NullOutput()


class StreamOperator:
    """Base operator. Subclasses override ``process_batch`` and the hooks they need."""

    output: Output
    ctx: OperatorContext

    def __init__(self, name: str, function: Any = None) -> None:
        self.name = name
        self.function = function
        self.output = NullOutput()

    side_outputs: dict[str, Output]

    def setup(
        self, ctx: OperatorContext, output: Output, side_outputs: dict[str, Output] | None = None
    ) -> None:
        self.ctx = ctx
        self.output = output
        self.side_outputs = side_outputs or {}
        self.runtime_context = StreamingRuntimeContext(ctx)
        # each operator knows the last watermark it received (also when chained into a source)
        ctx.current_watermark = self._current_watermark

    def side_output(self, tag_id: str) -> Output:
        """Where records for side output ``tag_id`` go (nowhere if nobody reads them)."""
        return self.side_outputs.get(tag_id, _NULL)

    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        """Restore from this operator's snapshots of every old subtask, or start fresh (None).

        Keyed state takes the key groups this subtask owns; operator list state is dealt
        round-robin and union list state goes to everyone, so any parallelism can restore.
        """
        ctx = self.ctx
        if snapshots is not None:
            ops = [s["operator"] for s in snapshots if "operator" in s]
            if ops:
                ctx.operator_state.restore(ops, ctx.subtask_index, ctx.parallelism)
            keyed = [s["keyed"] for s in snapshots if "keyed" in s]
            if keyed and ctx.keyed_backend is not None:
                owned = key_group_range(ctx.subtask_index, ctx.max_parallelism, ctx.parallelism)
                ctx.keyed_backend.restore(keyed, owned)
        if isinstance(self.function, CheckpointedFunction):
            self.function.initialize_state(
                InitializationContext(ctx, restored=snapshots is not None)
            )

    def open(self) -> None:
        if self.function is not None:
            open_function(self.function, self.runtime_context)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.output.emit(values, timestamps)

    watermark: int = -(2**63)

    def _current_watermark(self) -> int:
        return self.watermark

    def process_watermark(self, watermark: int) -> None:
        self.watermark = watermark
        self.output.emit_watermark(watermark)

    def process_watermark_status(self, idle: bool) -> None:
        self.output.emit_watermark_status(idle)

    counts_records_in = False
    """Operators that count their own ``records_in`` (sinks, also when chained)."""

    uses_ticks = False
    """Operators that set this get ``tick(now_ms)`` from their task about every batch and at
    least every ~100 ms (periodic watermarks, processing-time timers)."""

    def tick(self, now_ms: int) -> None:
        """Processing time moved on."""

    def end_input(self) -> None:
        """The input is exhausted; emit anything held back."""

    def prepare_snapshot(self, checkpoint_id: int) -> None:
        """Before a snapshot: flush what must be durable (at-least-once sinks)."""

    def snapshot_state(self, checkpoint_id: int, timestamp: int) -> dict[str, Any]:
        if isinstance(self.function, CheckpointedFunction):
            self.function.snapshot_state(SnapshotContext(checkpoint_id, timestamp))
        snap: dict[str, Any] = {}
        op_state = self.ctx.operator_state
        if not op_state.empty:
            snap["operator"] = op_state.snapshot()
        if self.ctx.keyed_backend is not None and self.ctx.keyed_backend.tables:
            snap["keyed"] = self.ctx.keyed_backend.snapshot()
        return snap

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if isinstance(self.function, CheckpointListener):
            self.function.notify_checkpoint_complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if isinstance(self.function, CheckpointListener):
            self.function.notify_checkpoint_aborted(checkpoint_id)

    def close(self) -> None:
        if self.function is not None:
            close_function(self.function)

    def connector_context(self) -> dict[str, Any]:
        """The fields ``ReaderContext`` and ``WriterContext`` share, from this subtask."""
        ctx = self.ctx
        return {
            "subtask_index": ctx.subtask_index,
            "parallelism": ctx.parallelism,
            "operator_name": self.name,
            "attempt": ctx.attempt,
            "metrics": ctx.metrics,
            "processing_time": ctx.processing_time,
            "checkpointing": ctx.checkpointing,
        }

    def fail(self, cause: BaseException, record: Any = ...) -> OperatorFailure:
        return OperatorFailure(self.name, cause, record)
