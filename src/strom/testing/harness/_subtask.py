"""What every harness shares: one subtask around a runtime operator, without a job.

``SubtaskHarness`` gives the operator a real ``OperatorContext`` (clock, metrics,
accumulators, state backend) and numbers checkpoints; ``SourceHarness`` adds what a source
emitted. The helpers turn a test's arguments (snapshots, batches) into what the operators take.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from strom.metrics import MetricGroup
from strom.runtime.context import AccumulatorRegistry, OperatorContext
from strom.runtime.elements import MIN_WATERMARK
from strom.runtime.keygroups import DEFAULT_MAX_PARALLELISM
from strom.runtime.operators.base import OperatorFailure, Output, StreamOperator
from strom.runtime.state import OperatorStateBackend
from strom.testing.clock import ManualClock

__all__ = [
    "CollectingOutput",
    "SourceHarness",
    "SubtaskHarness",
    "as_batch",
    "call_operator",
    "connector_snapshots",
    "expect_instance",
    "function_snapshots",
]


def call_operator(fn: Callable[..., Any], *args: Any) -> Any:
    """Call into an operator; raise what the user's code raised, not the runtime's wrapper
    (in a job it names the operator; a test wants to catch its own exception)."""
    try:
        return fn(*args)
    except OperatorFailure as e:
        raise e.cause from e


def expect_instance(obj: object, kind: type, what: str) -> None:
    """``TypeError`` unless ``obj`` is a ``kind`` (``what`` names it in the message)."""
    if not isinstance(obj, kind):
        raise TypeError(f"expected a {what}, got {type(obj).__name__}")


class CollectingOutput(Output):
    """What a source emits: values, their timestamps, watermarks; waitable."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.values: list[Any] = []
        self.timestamps: list[int | None] = []
        self.watermarks: list[int] = []
        self.idle = False

    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        with self.cond:
            self.values.extend(values)
            self.timestamps.extend(timestamps if timestamps is not None else [None] * len(values))
            self.cond.notify_all()

    def emit_watermark(self, watermark: int) -> None:
        with self.cond:
            self.watermarks.append(watermark)
            self.cond.notify_all()

    def emit_watermark_status(self, idle: bool) -> None:
        with self.cond:
            self.idle = idle
            self.cond.notify_all()


class SubtaskHarness:
    """One subtask around ``operator``: context, clock, state backend, checkpoint ids."""

    def __init__(
        self,
        operator: StreamOperator,
        output: Output,
        subtask_index: int,
        parallelism: int,
        *,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        job_parameters: dict[str, str] | None = None,
    ) -> None:
        if parallelism < 1 or not 0 <= subtask_index < parallelism:
            raise ValueError(
                f"subtask_index must be in [0, parallelism); got {subtask_index} of {parallelism}"
            )
        self.processing_time: Callable[[], int] = processing_time or ManualClock()
        """The clock (``ctx.current_processing_time()``); a ``ManualClock`` at 0 by default."""
        self.watermark = MIN_WATERMARK
        """What ``current_watermark()`` returns to the function."""
        self.metrics = MetricGroup()
        self._accumulators = AccumulatorRegistry()
        self._context = OperatorContext(
            job_name="harness",
            operator_name=operator.name,
            operator_uid=operator.name,
            subtask_index=subtask_index,
            parallelism=parallelism,
            max_parallelism=max_parallelism,
            attempt=attempt,
            metrics=self.metrics.add_group(f"{operator.name}[{subtask_index}]"),
            accumulators=self._accumulators,
            processing_time=self.processing_time,
            job_parameters=dict(job_parameters or {}),
        )
        operator.setup(self._context, output)
        # the harness, not a watermark stream, says what current_watermark() returns
        self._context.current_watermark = lambda: self.watermark
        self._operator = operator
        self._last_checkpoint = 0
        self._opened = False
        self._closed = False

    def _open(self, snapshots: list[dict[str, Any]] | None) -> None:
        call_operator(self._operator.initialize_state, snapshots)
        call_operator(self._operator.open)
        self._opened = True

    def _checkpoint(self, requested: int | None, timestamp: int | None = None) -> tuple[int, int]:
        cid = self._last_checkpoint + 1 if requested is None else requested
        self._last_checkpoint = max(self._last_checkpoint, cid)
        return cid, self.processing_time() if timestamp is None else timestamp

    @property
    def operator_state(self) -> OperatorStateBackend:
        """The subtask's operator state (list and union list states), for inspection."""
        return self._context.operator_state

    def accumulators(self) -> dict[str, Any]:
        """The accumulators the function added, by name."""
        return self._accumulators.merged()

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        call_operator(self._operator.notify_checkpoint_complete, checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        call_operator(self._operator.notify_checkpoint_aborted, checkpoint_id)

    def close(self) -> None:
        """Close the function or connector (once; not if it never opened)."""
        if not self._closed:
            self._closed = True
            if self._opened:
                call_operator(self._operator.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SourceHarness(SubtaskHarness):
    """A subtask whose operator emits: what it emitted, for the test to look at."""

    output_sink: CollectingOutput

    @property
    def output(self) -> list[Any]:
        """Everything emitted so far, in order."""
        with self.output_sink.cond:
            return list(self.output_sink.values)

    @property
    def timestamps(self) -> list[int | None]:
        """The timestamp of each element of ``output`` (None where it had none)."""
        with self.output_sink.cond:
            return list(self.output_sink.timestamps)

    @property
    def watermarks(self) -> list[int]:
        """Watermarks emitted so far, in order."""
        with self.output_sink.cond:
            return list(self.output_sink.watermarks)


def function_snapshots(restored_state: Sequence[dict[str, Any]] | None) -> Any:
    if restored_state is None:
        return None
    if isinstance(restored_state, dict):
        raise TypeError("restored_state is a list of snapshots, one per old subtask: use [snap]")
    # a copy, so a harness never changes the snapshots a test may restore from again
    return copy.deepcopy(list(restored_state))


def connector_snapshots(key: str, restored_state: Sequence[Sequence[Any]] | None) -> Any:
    if restored_state is None:
        return None
    return [{key: list(s)} for s in copy.deepcopy(list(restored_state))]


def as_batch(values: Iterable[Any], timestamps: Iterable[int] | None) -> tuple[list[Any], Any]:
    vs = list(values)
    ts = None if timestamps is None else [int(t) for t in timestamps]
    if ts is not None and len(ts) != len(vs):
        raise ValueError(f"{len(vs)} values but {len(ts)} timestamps")
    return vs, ts
