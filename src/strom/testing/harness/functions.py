"""Harnesses for the function API: a push-style ``SourceFunction`` and a per-record
``SinkFunction``, each driven as one subtask of a job would drive it.

``SourceFunctionHarness`` runs ``run(ctx)`` on a background thread, with the runtime's own
source operator around it; a stand-in for the task (``TaskHost``) gives it the mailbox through
which snapshots and checkpoint notifications reach it under the checkpoint lock.
``SinkFunctionHarness`` calls the sink in the test's thread.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from strom.functions import ParallelSourceFunction, SinkFunction, SourceFunction
from strom.functions.core import describe
from strom.runtime.keygroups import DEFAULT_MAX_PARALLELISM
from strom.runtime.operators.base import NullOutput
from strom.runtime.operators.sinks import SinkFunctionOperator
from strom.runtime.operators.sources import SourceFunctionOperator
from strom.testing.harness._subtask import (
    CollectingOutput,
    SourceHarness,
    SubtaskHarness,
    as_batch,
    call_operator,
    expect_instance,
    function_snapshots,
)
from strom.testing.harness._task import MailboxCall, TaskHost

__all__ = ["SinkFunctionHarness", "SourceFunctionHarness"]

T = TypeVar("T")


class SourceFunctionHarness(SourceHarness, Generic[T]):
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
        expect_instance(source_function, SourceFunction, "SourceFunction")
        if parallelism > 1 and not isinstance(source_function, ParallelSourceFunction):
            raise ValueError(
                f"{describe(source_function)} is not a ParallelSourceFunction; "
                "it can only run with parallelism 1"
            )
        self.function = source_function
        self.output_sink = CollectingOutput()
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
        self._host = TaskHost(batch_size, flush_interval=0.01)
        self._restored = function_snapshots(restored_state)
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
        call = MailboxCall(fn)
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


class SinkFunctionHarness(SubtaskHarness, Generic[T]):
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
        expect_instance(sink_function, SinkFunction, "SinkFunction")
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
        self._open(function_snapshots(restored_state))

    def invoke(self, value: T, timestamp: int | None = None) -> None:
        self.invoke_all([value], None if timestamp is None else [timestamp])

    def invoke_all(self, values: Iterable[T], timestamps: Iterable[int] | None = None) -> None:
        """``invoke`` each value in order, as one batch (with event-time timestamps)."""
        call_operator(self._operator.process_batch, *as_batch(values, timestamps))

    def snapshot(
        self, checkpoint_id: int | None = None, timestamp: int | None = None
    ) -> dict[str, Any]:
        """``snapshot_state`` as at a checkpoint; returns the subtask's snapshot."""
        cid, ts = self._checkpoint(checkpoint_id, timestamp)
        call_operator(self._operator.prepare_snapshot, cid)
        snap: dict[str, Any] = copy.deepcopy(call_operator(self._operator.snapshot_state, cid, ts))
        return snap

    def finish(self) -> None:
        """The input is exhausted: calls ``finish()``."""
        call_operator(self._operator.end_input)
