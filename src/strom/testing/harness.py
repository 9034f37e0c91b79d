"""Harnesses that drive one subtask of a user's source or sink directly, without a job.

A job test shows *that* something went wrong; a harness lets a test stand exactly where a
checkpoint, a cancel or a restore happens and look. Each harness runs the function (or
connector) inside the runtime's own operator for it, with a real ``OperatorContext`` and state
backend, so ``initialize_state``/``open``/``snapshot_state`` see what they see in a job:

- ``SourceFunctionHarness``: a push-style ``SourceFunction`` whose ``run(ctx)`` runs on a
  background thread; ``snapshot`` takes the checkpoint lock like the runtime does, ``cancel``
  fails loudly if ``run`` does not return.
- ``SinkFunctionHarness``: a per-record ``SinkFunction``.
- ``SourceReaderHarness`` / ``SinkWriterHarness``: the pull-based connector contract.

Snapshots are what the runtime stores for the subtask; a harness built with ``restored_state``
(the snapshots of *all* old subtasks, in a list) restores the way a job does, also at another
parallelism. ``run_to_completion`` runs a whole (bounded) job and returns its output.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from strom.connectors.base import Batch, Sink, SinkWriter, Source, SourceReader
from strom.functions import ParallelSourceFunction, SinkFunction, SourceFunction
from strom.functions.core import describe
from strom.metrics import MetricGroup
from strom.runtime.context import AccumulatorRegistry, OperatorContext
from strom.runtime.elements import MIN_WATERMARK
from strom.runtime.keygroups import DEFAULT_MAX_PARALLELISM
from strom.runtime.operators.base import NullOutput, OperatorFailure, Output, StreamOperator
from strom.runtime.operators.sinks import SinkFunctionOperator, SinkWriterOperator
from strom.runtime.operators.sources import SourceFunctionOperator, SourceReaderOperator
from strom.runtime.state import OperatorStateBackend
from strom.testing.clock import ManualClock

if TYPE_CHECKING:
    from strom.api import DataStream, StreamExecutionEnvironment
    from strom.runtime.job import JobExecutionResult

__all__ = [
    "SinkFunctionHarness",
    "SinkWriterHarness",
    "SourceFunctionHarness",
    "SourceReaderHarness",
    "run_to_completion",
]

T = TypeVar("T")


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call into an operator; raise what the user's code raised, not the runtime's wrapper
    (in a job it names the operator; a test wants to catch its own exception)."""
    try:
        return fn(*args)
    except OperatorFailure as e:
        raise e.cause from e


class _CollectingOutput(Output):
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


class _Harness:
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
        _call(self._operator.initialize_state, snapshots)
        _call(self._operator.open)
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
        _call(self._operator.notify_checkpoint_complete, checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        _call(self._operator.notify_checkpoint_aborted, checkpoint_id)

    def close(self) -> None:
        """Close the function or connector (once; not if it never opened)."""
        if not self._closed:
            self._closed = True
            if self._opened:
                _call(self._operator.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _SourceHarness(_Harness):
    output_sink: _CollectingOutput

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


def _function_snapshots(restored_state: Sequence[dict[str, Any]] | None) -> Any:
    if restored_state is None:
        return None
    if isinstance(restored_state, dict):
        raise TypeError("restored_state is a list of snapshots, one per old subtask: use [snap]")
    # a copy, so a harness never changes the snapshots a test may restore from again
    return copy.deepcopy(list(restored_state))


def _connector_snapshots(key: str, restored_state: Sequence[Sequence[Any]] | None) -> Any:
    if restored_state is None:
        return None
    return [{key: list(s)} for s in copy.deepcopy(list(restored_state))]


# -- push-style source ----------------------------------------------------------------------


class _Host:
    """Stands in for the task around a source operator: batch size, mailbox, cancel flag."""

    def __init__(self, batch_size: int, flush_interval: float) -> None:
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.cancelled = False
        self._mailbox: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()

    def cancel(self) -> None:
        self.cancelled = True
        with self._cond:
            self._cond.notify_all()

    def post(self, action: Callable[[], None]) -> None:
        with self._cond:
            self._mailbox.append(action)
            self._cond.notify_all()

    def process_mailbox(self) -> None:
        while self._mailbox:
            self._mailbox.popleft()()

    def wait_mailbox(self, timeout: float) -> bool:
        with self._cond:
            if not self._mailbox and not self.cancelled:
                self._cond.wait(timeout)
            return bool(self._mailbox)

    def tick(self) -> None:
        """A source function harness keeps no timers or watermark generators of its own."""


class _Call:
    """A mailbox action that runs at most once: in the source's mailbox, or in the caller if
    ``run`` returned first; or never, if the caller gave up on it (``disarm``)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._claimed = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def _claim(self) -> bool:
        with self._lock:
            claimed, self._claimed = self._claimed, True
            return not claimed

    def disarm(self) -> bool:
        """Make sure it never runs; False if it already runs or ran."""
        return self._claim()

    def __call__(self) -> None:
        if not self._claim():
            return
        try:
            self.result = self._fn()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()


class SourceFunctionHarness(_SourceHarness, Generic[T]):
    """Runs one subtask of a ``SourceFunction``, with ``run(ctx)`` on a background thread.

    ::

        with SourceFunctionHarness(MySource()) as h:
            h.start()
            assert h.take(3) == [0, 1, 2]
            snap = h.snapshot()         # under the checkpoint lock, between two emits
        restored = SourceFunctionHarness(MySource(), restored_state=[snap]).start()

    ``start`` calls ``initialize_state`` (for a ``CheckpointedFunction``) and ``open``, then
    ``run``. Snapshots, checkpoint notifications and the periodic flush of partial batches go
    through the mailbox and checkpoint lock of the runtime's own source operator.

    Args:
        source_function: the function under test (used as is, not copied).
        subtask_index, parallelism: where this subtask runs; > 1 needs a
            ``ParallelSourceFunction``.
        restored_state: the snapshots (``snapshot()``) of all subtasks of an earlier run;
            None for a fresh start.
        batch_size: records per emitted batch; 1 makes every ``collect`` visible at once.
    """

    def __init__(
        self,
        source_function: SourceFunction[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[dict[str, Any]] | None = None,
        *,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        attempt: int = 0,
        batch_size: int = 1,
        processing_time: Callable[[], int] | None = None,
        job_parameters: dict[str, str] | None = None,
        name: str = "Custom Source",
    ) -> None:
        if not isinstance(source_function, SourceFunction):
            raise TypeError(f"expected a SourceFunction, got {type(source_function).__name__}")
        if parallelism > 1 and not isinstance(source_function, ParallelSourceFunction):
            raise ValueError(
                f"{describe(source_function)} is not a ParallelSourceFunction; "
                "it can only run with parallelism 1"
            )
        self.function = source_function
        self.output_sink = _CollectingOutput()
        self._source_operator = SourceFunctionOperator(name, source_function)
        super().__init__(
            self._source_operator,
            self.output_sink,
            subtask_index,
            parallelism,
            max_parallelism=max_parallelism,
            attempt=attempt,
            processing_time=processing_time,
            job_parameters=job_parameters,
        )
        self._host = _Host(batch_size, flush_interval=0.01)
        self._restored = _function_snapshots(restored_state)
        self._thread: threading.Thread | None = None
        self._finished = False
        self._failure: BaseException | None = None
        self._failure_reported = False
        self._taken = 0
        self._marks: dict[int, int] = {}

    @property
    def failure(self) -> BaseException | None:
        """What ``run`` raised, if it did."""
        return self._failure

    @property
    def running(self) -> bool:
        """True from ``start`` until ``run`` returns."""
        return self._is_running()

    def _is_running(self) -> bool:
        # A method as well as the property: mypy narrows properties as if they were fields,
        # but this answer changes under our feet.
        return self._thread is not None and not self._finished

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """``initialize_state`` and ``open`` (here: their errors raise here), then ``run``."""
        if self._thread is not None:
            raise RuntimeError("the harness was already started")
        self._open(self._restored)
        self._thread = threading.Thread(
            target=self._run,
            name=f"harness-{self._operator.name}[{self._context.subtask_index}]",
            daemon=True,  # a run() that ignores cancel() must not keep the test process alive
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._source_operator.run(self._host)
        except BaseException as e:
            self._failure = e
        finally:
            with self.output_sink.cond:
                self._finished = True
                self.output_sink.cond.notify_all()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_reported = True
            raise self._failure

    def take(self, n: int, timeout: float = 5.0) -> list[T]:
        """The next ``n`` elements not taken yet, waiting up to ``timeout`` seconds for them.

        Raises what ``run`` raised, ``TimeoutError`` if they do not come in time, and
        ``RuntimeError`` if ``run`` returned without emitting them.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        out = self.output_sink
        with out.cond:
            while len(out.values) - self._taken < n:
                self._raise_failure()
                have = len(out.values) - self._taken
                if self._finished:
                    raise RuntimeError(f"run() returned after {have} of the {n} elements")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"only {have} of {n} elements within {timeout} s")
                out.cond.wait(remaining)
            taken = out.values[self._taken : self._taken + n]
            self._taken += n
            return taken

    def join(self, timeout: float = 5.0) -> list[T]:
        """Wait for ``run`` to return by itself (a finite source); the elements not taken yet.

        Raises what ``run`` raised, or ``TimeoutError``.
        """
        thread = self._require_started()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{describe(self.function)}.run() still running after {timeout} s")
        self._raise_failure()
        with self.output_sink.cond:
            rest = self.output_sink.values[self._taken :]
            self._taken = len(self.output_sink.values)
            return rest

    def cancel(self, timeout: float = 5.0) -> None:
        """Call ``cancel()``, wait for ``run`` to return, then ``close()`` the function.

        ``TimeoutError`` if ``run`` still runs after ``timeout`` seconds: such a source would
        hang the cancellation of a job the same way. Also raises a failure of ``run`` that no
        other method has raised yet, so that it cannot go unnoticed.
        """
        if self._is_running():
            assert self._thread is not None
            self._host.cancel()
            self._source_operator.cancel()
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(
                    f"{describe(self.function)}.run() did not return within {timeout} s of "
                    "cancel(); it must stop soon after cancel(), also while it waits for data"
                )
        super().close()
        if not self._failure_reported:
            self._raise_failure()

    def close(self) -> None:
        """``cancel()`` if ``run`` still runs, then close the function (once)."""
        self.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.cancel()
            return
        try:  # the test failed already: its error matters, not one from cleaning up
            self.cancel()
        except Exception:
            pass

    # -- checkpoints ------------------------------------------------------------------------
    def snapshot(
        self, checkpoint_id: int | None = None, timestamp: int | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Take this subtask's snapshot as a checkpoint would, and return it.

        While ``run`` runs this holds the checkpoint lock: buffered elements are emitted first,
        then ``snapshot_state`` is called. ``TimeoutError`` if the lock is not free within
        ``timeout`` (a ``run`` that never lets go of it stalls every checkpoint).
        ``output_before(checkpoint_id)`` then tells what was emitted before the snapshot.
        """
        self._require_started()
        cid, ts = self._checkpoint(checkpoint_id, timestamp)

        def take_snapshot() -> dict[str, Any]:
            snap = self._operator.snapshot_state(cid, ts)
            with self.output_sink.cond:
                self._marks[cid] = len(self.output_sink.values)
            # the runtime serializes a snapshot at once; a copy keeps later changes out of it
            return copy.deepcopy(snap)

        snapshot: dict[str, Any] = self._in_task(take_snapshot, timeout)
        return snapshot

    def output_before(self, checkpoint_id: int) -> list[T]:
        """The elements emitted before the snapshot of ``checkpoint_id``."""
        with self.output_sink.cond:
            return list(self.output_sink.values[: self._marks[checkpoint_id]])

    def notify_checkpoint_complete(self, checkpoint_id: int, timeout: float = 5.0) -> None:
        self._require_started()
        self._in_task(lambda: self._operator.notify_checkpoint_complete(checkpoint_id), timeout)

    def notify_checkpoint_aborted(self, checkpoint_id: int, timeout: float = 5.0) -> None:
        self._require_started()
        self._in_task(lambda: self._operator.notify_checkpoint_aborted(checkpoint_id), timeout)

    def _in_task(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` where the runtime would: in the mailbox, under the checkpoint lock, while
        ``run`` runs; directly once it has returned."""
        call = _Call(fn)
        if self._is_running():
            self._host.post(call)
            deadline = time.monotonic() + timeout
            while not call.done.wait(0.01):
                if not self._is_running():
                    call()  # run() returned before its mailbox got to it
                elif time.monotonic() >= deadline and call.disarm():
                    raise TimeoutError(
                        f"the checkpoint lock was not free within {timeout} s; does "
                        f"{describe(self.function)}.run() hold it while it waits?"
                    )
        else:
            call()
        if call.error is not None:
            raise call.error
        return call.result

    def _require_started(self) -> threading.Thread:
        if self._thread is None:
            raise RuntimeError("call start() first")
        return self._thread


# -- per-record sink ------------------------------------------------------------------------


class SinkFunctionHarness(_Harness, Generic[T]):
    """Drives one subtask of a ``SinkFunction`` as a job would call it.

    ``initialize_state`` and ``open`` run in the constructor; then ``invoke_all``,
    ``snapshot``, ``notify_checkpoint_complete``, ``finish`` and ``close``. Errors raised by
    ``invoke`` propagate as they are. ``watermark`` is what ``context.current_watermark()``
    returns; ``restored_state`` takes the snapshots of all old subtasks.
    """

    def __init__(
        self,
        sink_function: SinkFunction[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[dict[str, Any]] | None = None,
        *,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        job_parameters: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(sink_function, SinkFunction):
            raise TypeError(f"expected a SinkFunction, got {type(sink_function).__name__}")
        self.function = sink_function
        super().__init__(
            SinkFunctionOperator(name or f"Sink: {describe(sink_function)}", sink_function),
            NullOutput(),
            subtask_index,
            parallelism,
            max_parallelism=max_parallelism,
            attempt=attempt,
            processing_time=processing_time,
            job_parameters=job_parameters,
        )
        self._open(_function_snapshots(restored_state))

    def invoke(self, value: T, timestamp: int | None = None) -> None:
        self.invoke_all([value], None if timestamp is None else [timestamp])

    def invoke_all(self, values: Iterable[T], timestamps: Iterable[int] | None = None) -> None:
        """``invoke`` each value in order, as one batch (with event-time timestamps)."""
        _call(self._operator.process_batch, *_batch(values, timestamps))

    def snapshot(
        self, checkpoint_id: int | None = None, timestamp: int | None = None
    ) -> dict[str, Any]:
        """``snapshot_state`` as at a checkpoint; returns the subtask's snapshot."""
        cid, ts = self._checkpoint(checkpoint_id, timestamp)
        _call(self._operator.prepare_snapshot, cid)
        snap: dict[str, Any] = copy.deepcopy(_call(self._operator.snapshot_state, cid, ts))
        return snap

    def finish(self) -> None:
        """The input is exhausted: calls ``finish()``."""
        _call(self._operator.end_input)


def _batch(values: Iterable[Any], timestamps: Iterable[int] | None) -> tuple[list[Any], Any]:
    vs = list(values)
    ts = None if timestamps is None else [int(t) for t in timestamps]
    if ts is not None and len(ts) != len(vs):
        raise ValueError(f"{len(vs)} values but {len(ts)} timestamps")
    return vs, ts


# -- pull-based connector contract ----------------------------------------------------------


class SourceReaderHarness(_SourceHarness, Generic[T]):
    """Drives the reader of one subtask of a pull-based ``Source``, in the calling thread.

    The reader is created and opened in the constructor. ``restored_state`` is what
    ``snapshot()`` returned for each old subtask (a list of lists); the reader gets it as the
    runtime gives it, so restores at another parallelism can be tested too.
    """

    def __init__(
        self,
        source: Source[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[Sequence[Any]] | None = None,
        *,
        max_records: int = 1024,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(source, Source):
            raise TypeError(f"expected a connectors.base.Source, got {type(source).__name__}")
        if source.max_parallelism is not None and parallelism > source.max_parallelism:
            raise ValueError(f"{source.describe()} supports {source.max_parallelism} subtask(s)")
        self.source = source
        self.max_records = max_records
        self.finished = False
        """True once ``poll`` returned None."""
        self.output_sink = _CollectingOutput()
        self._reader_operator = SourceReaderOperator(name or source.describe(), source)
        super().__init__(
            self._reader_operator,
            self.output_sink,
            subtask_index,
            parallelism,
            attempt=attempt,
            processing_time=processing_time,
        )
        self._open(_connector_snapshots("reader", restored_state))

    @property
    def reader(self) -> SourceReader[T]:
        return self._reader_operator.reader

    def poll(self) -> list[T] | None:
        """One ``poll``: its records (``[]`` if none right now), or None once finished."""
        if self.finished:
            return None
        batch = self.reader.poll(self.max_records)
        if batch is None:
            self.finished = True
            return None
        if isinstance(batch, Batch):
            values, timestamps = list(batch.values), batch.timestamps
        elif isinstance(batch, list):
            values, timestamps = list(batch), None
        else:
            raise TypeError(
                f"{type(self.reader).__name__}.poll returned {type(batch).__name__}; "
                "expected a list, a Batch or None"
            )
        if values:
            self.output_sink.emit(values, timestamps)
        return values

    def poll_all(
        self, max_batches: int | None = None, until_end: bool = True, timeout: float = 10.0
    ) -> list[T]:
        """Poll repeatedly; all records read.

        Stops when the reader is finished, after ``max_batches`` non-empty batches, or — with
        ``until_end=False`` — at the first poll with nothing available. With ``until_end`` it
        polls on through empty polls, and raises ``TimeoutError`` if the reader does not finish
        within ``timeout`` seconds.
        """
        out: list[T] = []
        batches = 0
        deadline = time.monotonic() + timeout
        while max_batches is None or batches < max_batches:
            batch = self.poll()
            if batch is None:
                break
            if batch:
                out.extend(batch)
                batches += 1
            elif not until_end:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.source.describe()}: not finished within {timeout} s "
                    f"({len(out)} records read)"
                )
        return out

    def snapshot(self, checkpoint_id: int | None = None) -> list[Any]:
        """The reader's ``snapshot_state``; restore from a list of these."""
        cid, ts = self._checkpoint(checkpoint_id)
        return list(copy.deepcopy(self._operator.snapshot_state(cid, ts)["reader"]))

    def wakeup(self) -> None:
        self.reader.wakeup()


class SinkWriterHarness(_Harness, Generic[T]):
    """Drives the writer of one subtask of a batch ``Sink``, in the calling thread.

    The writer is created and opened in the constructor; ``restored_state`` is what
    ``snapshot()`` returned for each old subtask (a list of lists), dealt to this subtask as the
    runtime deals it. ``snapshot`` flushes first, as before a checkpoint.
    """

    def __init__(
        self,
        sink: Sink[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[Sequence[Any]] | None = None,
        *,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(sink, Sink):
            raise TypeError(f"expected a connectors.base.Sink, got {type(sink).__name__}")
        if sink.max_parallelism is not None and parallelism > sink.max_parallelism:
            raise ValueError(f"{sink.describe()} supports {sink.max_parallelism} subtask(s)")
        self.sink = sink
        self._writer_operator = SinkWriterOperator(name or sink.describe(), sink)
        super().__init__(
            self._writer_operator,
            NullOutput(),
            subtask_index,
            parallelism,
            attempt=attempt,
            processing_time=processing_time,
        )
        self._open(_connector_snapshots("writer", restored_state))

    @property
    def writer(self) -> SinkWriter[T]:
        return self._writer_operator.writer

    def write(self, values: Iterable[T], timestamps: Iterable[int] | None = None) -> None:
        """One batch, as the runtime hands it to ``write``."""
        self._operator.process_batch(*_batch(values, timestamps))

    def flush(self, end_of_input: bool = False) -> None:
        self.writer.flush(end_of_input)

    def end_input(self) -> None:
        """The input is exhausted: ``flush(True)``, as after the last batch of a job."""
        self._operator.end_input()

    def snapshot(self, checkpoint_id: int | None = None) -> list[Any]:
        """``flush(False)``, then ``snapshot_state``, as at a checkpoint."""
        cid, ts = self._checkpoint(checkpoint_id)
        self._operator.prepare_snapshot(cid)
        return list(copy.deepcopy(self._operator.snapshot_state(cid, ts)["writer"]))


# -- whole jobs -----------------------------------------------------------------------------


@overload
def run_to_completion(
    env_or_stream: DataStream, *, timeout: float = ..., job_name: str | None = ...
) -> list[Any]: ...


@overload
def run_to_completion(
    env_or_stream: StreamExecutionEnvironment,
    *,
    timeout: float = ...,
    job_name: str | None = ...,
) -> JobExecutionResult: ...


def run_to_completion(
    env_or_stream: DataStream | StreamExecutionEnvironment,
    *,
    timeout: float = 30.0,
    job_name: str | None = None,
) -> list[Any] | JobExecutionResult:
    """Run a bounded job to its end.

    Given a ``DataStream``, collect it (``execute_and_collect``) and return every record.
    Given an environment, execute the sinks defined on it and return the ``JobExecutionResult``.
    A failure of the job raises ``JobExecutionError``; a job still running after ``timeout``
    seconds (an unbounded source, a hang) is cancelled and ``TimeoutError`` raised.
    """
    from strom.api import DataStream, StreamExecutionEnvironment

    if isinstance(env_or_stream, StreamExecutionEnvironment):
        client = env_or_stream.execute_async(job_name or "strom job")
        try:
            return client.wait(timeout)
        except TimeoutError:
            client.cancel()
            try:
                client.wait(30)
            except Exception:  # the timeout is the error the caller needs to see
                pass
            raise
    if not isinstance(env_or_stream, DataStream):
        raise TypeError(
            f"run_to_completion expects a DataStream or an environment, got {env_or_stream!r}"
        )
    it = env_or_stream.execute_and_collect(job_name or "run_to_completion")
    assert not isinstance(it, list)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        it.close()

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    records: list[Any] = []
    watchdog.start()
    try:
        with it:
            for record in it:
                records.append(record)
    except Exception as e:
        if timed_out.is_set():
            raise TimeoutError(
                f"job still running after {timeout} s; {len(records)} records so far"
            ) from e
        raise
    finally:
        watchdog.cancel()
        watchdog.join()  # if it fired: the job is cancelled and gone before we return
    if timed_out.is_set():
        raise TimeoutError(f"job still running after {timeout} s; {len(records)} records so far")
    return records
