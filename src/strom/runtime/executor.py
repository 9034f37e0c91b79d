"""The embedded executor: every subtask of every vertex as a thread in this process.

``LocalJobClient`` deploys a ``JobGraph`` (gates, writers, tasks), watches the tasks, and on
the first failure cancels all others and reports the failing operator, subtask and original
traceback. Blocking client libraries release the GIL, so I/O-bound tasks overlap.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from strom.errors import JobCancelledError, JobExecutionError
from strom.metrics import MetricGroup
from strom.runtime.channels import InputGate
from strom.runtime.context import AccumulatorRegistry
from strom.runtime.job import JobClient, JobExecutionResult, JobStatus
from strom.runtime.jobgraph import JobGraph
from strom.runtime.task import RecordWriterOutput, Task, TaskEnvironment, TaskState

log = logging.getLogger("strom.executor")

CANCEL_GRACE_SECONDS = 10.0
"""How long cancellation waits for a task thread; a user ``run()`` that ignores ``cancel()``
and never emits is abandoned (as a daemon thread) after this, with an error log."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def deploy(graph: JobGraph, env: TaskEnvironment) -> list[Task]:
    """Create gates, record writers and tasks for every subtask (nothing started)."""
    capacity = graph.config.channel_capacity
    gates: dict[tuple[int, int], InputGate] = {}
    channel_offset: dict[int, int] = {}  # edge index -> first channel in the target gates
    for v in graph.vertices:
        offset = 0
        for idx, e in enumerate(graph.edges):
            if e.target_vertex != v.id:
                continue
            channel_offset[idx] = offset
            offset += 1 if e.is_forward else graph.vertex(e.source_vertex).parallelism
        if offset:
            for s in range(v.parallelism):
                gates[(v.id, s)] = InputGate(offset, capacity)

    tasks: list[Task] = []
    for v in graph.vertices:
        for s in range(v.parallelism):
            outputs: list[list[RecordWriterOutput]] = [[] for _ in v.operators]
            for idx, e in enumerate(graph.edges):
                if e.source_vertex != v.id:
                    continue
                target = graph.vertex(e.target_vertex)
                targets: list[tuple[InputGate, int] | None]
                if e.is_forward:
                    targets = [None] * target.parallelism
                    targets[s] = (gates[(target.id, s)], channel_offset[idx])
                else:
                    targets = [
                        (gates[(target.id, j)], channel_offset[idx] + s)
                        for j in range(target.parallelism)
                    ]
                partitioner = e.partitioner()
                partitioner.setup(target.parallelism, s)
                outputs[e.source_operator].append(RecordWriterOutput(partitioner, targets))
            tasks.append(Task(v, s, env, gates.get((v.id, s)), outputs))
    return tasks


class LocalJobClient(JobClient):
    """Runs one job in threads of this process; ``wait`` returns its result or raises."""

    def __init__(self, graph: JobGraph) -> None:
        self.graph = graph
        self.job_id = uuid.uuid4().hex
        self._status = JobStatus.CREATED
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._cancel_requested = False
        self._tasks: list[Task] = []
        self._first_failure: Task | None = None
        self._metrics = MetricGroup()
        self._accumulators = AccumulatorRegistry()
        self._result: JobExecutionResult | None = None
        self._error: JobExecutionError | None = None
        self._start = time.monotonic()
        self._monitor = threading.Thread(
            target=self._run, name=f"job-{graph.job_name}", daemon=True
        )

    def start(self) -> LocalJobClient:
        self._monitor.start()
        return self

    # -- JobClient ------------------------------------------------------------------------
    def get_job_status(self) -> JobStatus:
        return self._status

    def cancel(self) -> None:
        with self._cond:
            if self._status.is_terminal:
                return
            self._cancel_requested = True
            self._status = JobStatus.CANCELLING
            self._cond.notify_all()
        for t in list(self._tasks):
            t.cancel()

    def wait(self, timeout: float | None = None) -> JobExecutionResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        # short waits so KeyboardInterrupt reaches the main thread promptly
        while not self._done.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.graph.job_name!r} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def metrics(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for scope, values in self._metrics.snapshot_groups().items():
            name = scope.rsplit("[", 1)[0]
            agg = merged.setdefault(name, {})
            for k, val in values.items():
                if isinstance(val, int | float):
                    agg[k] = agg.get(k, 0) + val
        return merged

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    # -- running --------------------------------------------------------------------------
    def _on_task_done(self, task: Task) -> None:
        with self._cond:
            if task.state is TaskState.FAILED and self._first_failure is None:
                self._first_failure = task
            self._cond.notify_all()
        if task.state is TaskState.FAILED:
            for t in self._tasks:
                if t is not task:
                    t.cancel()

    def _run(self) -> None:
        graph = self.graph
        cfg = graph.config
        env = TaskEnvironment(
            job_name=graph.job_name,
            config=cfg,
            attempt=0,
            accumulators=self._accumulators,
            metrics=self._metrics,
            processing_time=cfg.processing_time or wall_clock_ms,
            on_done=self._on_task_done,
        )
        try:
            self._tasks = deploy(graph, env)
        except BaseException as e:
            self._finish(JobStatus.FAILED, JobExecutionError(f"could not deploy job: {e}"), e)
            return
        with self._cond:
            if self._cancel_requested:
                self._finish(JobStatus.CANCELED, self._cancelled_error(), None)
                return
            self._status = JobStatus.RUNNING
        for t in self._tasks:
            t.start()
        with self._cond:
            while not all(t.state in _DONE for t in self._tasks):
                self._cond.wait(0.5)
                if self._cancel_requested or any(t.state is TaskState.FAILED for t in self._tasks):
                    break
        self._join_all()
        root = self._first_failure
        if root is not None:
            self._finish(JobStatus.FAILED, self._failure_error(root), root.failure)
        elif self.cancel_requested:
            self._finish(JobStatus.CANCELED, self._cancelled_error(), None)
        else:
            self._finish(JobStatus.FINISHED, None, None)

    def _join_all(self) -> None:
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for t in self._tasks:
            if t.state is TaskState.CREATED:
                continue
            t.thread.join(max(0.0, deadline - time.monotonic()))
            if t.thread.is_alive():
                if not t.cancelled:
                    t.cancel()
                    t.thread.join(max(0.0, deadline - time.monotonic()))
                if t.thread.is_alive():
                    log.error(
                        "task %s did not stop within %.0fs of cancellation; abandoning its "
                        "thread (does its SourceFunction.run() honour cancel()?)",
                        t.name,
                        CANCEL_GRACE_SECONDS,
                    )

    def _failure_error(self, task: Task) -> JobExecutionError:
        cause = task.failure
        original = getattr(cause, "cause", cause)
        v = task.vertex
        message = (
            f"Job {self.graph.job_name!r} failed: operator {task.failed_operator!r} "
            f"(subtask {task.subtask_index + 1}/{v.parallelism}) raised "
            f"{type(original).__name__}: {original}"
        )
        if cause is not original:
            message += f"\n  {cause}"
        return JobExecutionError(
            message,
            job_name=self.graph.job_name,
            operator=task.failed_operator,
            subtask=task.subtask_index,
            task_traceback=task.task_traceback,
        )

    def _cancelled_error(self) -> JobCancelledError:
        return JobCancelledError(f"Job {self.graph.job_name!r} was cancelled")

    def _finish(
        self, status: JobStatus, error: JobExecutionError | None, cause: BaseException | None
    ) -> None:
        if error is not None and cause is not None:
            error.__cause__ = getattr(cause, "cause", cause)
        self._error = error
        self._result = JobExecutionResult(
            job_id=self.job_id,
            job_name=self.graph.job_name,
            net_runtime_ms=int((time.monotonic() - self._start) * 1000),
            accumulators=self._accumulators.merged(),
            metrics=self.metrics(),
        )
        with self._cond:
            self._status = status
            self._cond.notify_all()
        self._done.set()


_DONE = (TaskState.FINISHED, TaskState.CANCELED, TaskState.FAILED)
