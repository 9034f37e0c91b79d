"""The embedded executor: every subtask of every vertex as a thread in this process.

``LocalJobClient`` deploys a ``JobGraph`` (gates, writers, tasks: ``deployment.py``), runs the
checkpoint coordinator beside it, and on the first failure cancels all tasks. The restart
strategy then decides: restore every task from the latest completed checkpoint (sources seek to
their stored positions) and run again, or fail the job naming the operator, subtask and original
traceback (``failures.py``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from strom.errors import InvalidJobError, JobCancelledError, JobExecutionError, StromError
from strom.metrics import MetricGroup
from strom.runtime.checkpoint import storage as ckpt_storage
from strom.runtime.checkpoint.config import CheckpointingMode, ExternalizedCheckpointRetention
from strom.runtime.checkpoint.coordinator import CheckpointCoordinator, CheckpointStats
from strom.runtime.checkpoint.storage import CheckpointStorage, CompletedCheckpoint
from strom.runtime.context import AccumulatorRegistry
from strom.runtime.deployment import deploy, join_tasks, load_restore_point
from strom.runtime.failures import describe_failure, task_failure_error
from strom.runtime.job import JobClient, JobExecutionResult, JobStatus
from strom.runtime.jobgraph import JobGraph
from strom.runtime.restart import FixedDelayRestart, NoRestart, RestartStrategy
from strom.runtime.task import Task, TaskEnvironment, TaskState

log = logging.getLogger("strom.executor")

CANCEL_GRACE_SECONDS = 10.0
"""How long cancellation waits for a task thread; a user ``run()`` that ignores ``cancel()``
and never emits is abandoned (as a daemon thread) after this, with an error log."""


_RUNNING: dict[str, LocalJobClient] = {}
_RUNNING_LOCK = threading.Lock()


_STOPPED_WITH_SAVEPOINT = threading.Event()


def stopped_with_savepoint() -> bool:
    """True once a job of this process was stopped with ``stop_with_savepoint``."""
    return _STOPPED_WITH_SAVEPOINT.is_set()


def running_jobs() -> list[LocalJobClient]:
    """Jobs of this process that have started and not yet ended."""
    with _RUNNING_LOCK:
        return list(_RUNNING.values())


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self._job_failure: BaseException | None = None
        self._coordinator: CheckpointCoordinator | None = None
        self._metrics = MetricGroup()
        self._accumulators = AccumulatorRegistry()
        self._result: JobExecutionResult | None = None
        self._error: JobExecutionError | None = None
        self._start = time.monotonic()
        self.restarts = 0
        self._stats: list[CheckpointStats] = []
        self._monitor = threading.Thread(
            target=self._run, name=f"job-{graph.job_name}", daemon=True
        )

    def start(self) -> LocalJobClient:
        with _RUNNING_LOCK:
            _RUNNING[self.job_id] = self
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

    def checkpoint_stats(self) -> list[CheckpointStats]:
        """Completed checkpoints and savepoints of this job so far (all attempts)."""
        coord = self._coordinator
        return self._stats + (list(coord.stats) if coord is not None else [])

    def trigger_checkpoint(self, timeout: float = 60.0) -> CompletedCheckpoint:
        """Take a checkpoint now and wait for it."""
        return self._coordinator_or_raise().trigger().result(timeout)

    def trigger_savepoint(self, directory: str, timeout: float = 60.0) -> str:
        """Write a savepoint under ``directory``; returns its path. Never deleted by strom."""
        coord = self._coordinator_or_raise()
        name = f"savepoint-{ckpt_storage._safe(self.graph.job_name)}-{uuid.uuid4().hex[:8]}"
        path = f"{directory.rstrip('/')}/{name}"
        return coord.trigger(savepoint_dir=path).result(timeout).path

    def stop_with_savepoint(self, directory: str, timeout: float = 60.0) -> str:
        path = self.trigger_savepoint(directory, timeout)
        self.cancel_after_savepoint()
        try:
            self.wait(timeout)
        except JobCancelledError:
            pass
        return path

    def cancel_after_savepoint(self) -> None:
        """Cancel, marking the end as a clean stop (``strom run`` then exits with 0)."""
        _STOPPED_WITH_SAVEPOINT.set()
        self.cancel()

    def _coordinator_or_raise(self) -> CheckpointCoordinator:
        coord = self._coordinator
        if coord is None:
            raise StromError(
                "checkpoints and savepoints need checkpointing enabled "
                "(env.enable_checkpointing) and a running job"
            )
        return coord

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
            if task.gate is not None:
                # upstream producers blocked on the failed task's full channels must wake now
                task.gate.cancel()
            for t in self._tasks:
                if t is not task:
                    t.cancel()

    def _fail_job(self, error: BaseException) -> None:
        """A failure outside any task (e.g. too many failed checkpoints)."""
        with self._cond:
            if self._job_failure is None:
                self._job_failure = error
            self._cond.notify_all()
        for t in list(self._tasks):
            t.cancel()

    def _restart_strategy(self) -> RestartStrategy:
        cfg = self.graph.config
        if cfg.restart_strategy is not None:
            return cfg.restart_strategy
        if cfg.checkpoint.enabled:
            return FixedDelayRestart(2**31 - 1, 1.0)
        return NoRestart()

    def _run(self) -> None:
        try:
            self._run_job()
        except BaseException as e:  # never leave wait() hanging on an internal error
            log.exception("job %r: internal error in the job monitor", self.graph.job_name)
            if not self._done.is_set():
                self._error = JobExecutionError(
                    f"Job {self.graph.job_name!r} failed: internal error: {e!r}"
                )
                self._error.__cause__ = e
                self._result = None
                with self._cond:
                    self._status = JobStatus.FAILED
                with _RUNNING_LOCK:
                    _RUNNING.pop(self.job_id, None)
                self._done.set()

    def _run_job(self) -> None:
        graph = self.graph
        cfg = graph.config
        try:
            restored = load_restore_point(graph)
        except Exception as e:
            err = JobExecutionError(f"Job {graph.job_name!r} cannot start: {e}")
            self._finish(JobStatus.FAILED, err, e)
            return
        strategy = self._restart_strategy()
        storage = (
            CheckpointStorage(
                cfg.checkpoint.storage, graph.job_name, cfg.checkpoint.storage_options
            )
            if cfg.checkpoint.enabled
            else None
        )
        next_id = restored.checkpoint_id + 1 if restored is not None else 1
        attempt = 0
        while True:
            self._run_attempt(attempt, restored, storage, next_id)
            coord = self._coordinator
            if coord is not None:
                self._stats.extend(coord.stats)
                latest = coord.latest_completed()
                restored = latest or restored
                next_id = coord.next_id
                self._coordinator = None
            failed = self._first_failure is not None or self._job_failure is not None
            if failed and not self._cancel_requested:
                delay = strategy.next_delay(time.monotonic())
                if delay is not None:
                    self._log_restart(attempt, delay, restored)
                    with self._cond:
                        self._status = JobStatus.RESTARTING
                        self._cond.wait_for(lambda: self._cancel_requested, delay)
                    if not self._cancel_requested:
                        attempt += 1
                        self.restarts = attempt
                        continue
            break
        self._conclude(storage)

    def _log_restart(
        self, attempt: int, delay: float, restored: CompletedCheckpoint | None
    ) -> None:
        what = describe_failure(self._first_failure, self._job_failure)
        where = f"checkpoint {restored.checkpoint_id}" if restored else "the start position"
        log.warning(
            "job %r attempt %d failed: %s; restarting in %.1fs from %s",
            self.graph.job_name,
            attempt,
            what,
            delay,
            where,
        )

    def _run_attempt(
        self,
        attempt: int,
        restored: CompletedCheckpoint | None,
        storage: CheckpointStorage | None,
        next_id: int,
    ) -> None:
        graph = self.graph
        cfg = graph.config
        self._first_failure = None
        self._job_failure = None
        coordinator = None
        if storage is not None:
            coordinator = CheckpointCoordinator(
                cfg.checkpoint,
                storage,
                job_name=graph.job_name,
                max_parallelism=max(v.max_parallelism for v in graph.vertices),
                wall_clock=wall_clock_ms,
                on_failure=self._fail_job,
                first_id=next_id,
                serializer=cfg.state_serializer,
            )
        operators = restored.operators if restored is not None else {}
        env = TaskEnvironment(
            job_name=graph.job_name,
            config=cfg,
            attempt=attempt,
            accumulators=self._accumulators,
            metrics=self._metrics,
            processing_time=cfg.processing_time or wall_clock_ms,
            restored_state=(lambda uid: operators.get(uid))
            if restored is not None
            else (lambda uid: None),
            acknowledge=coordinator.acknowledge
            if coordinator is not None
            else (lambda t, c, s, a: None),
            request_final_checkpoint=(
                coordinator.request_final_checkpoint if coordinator is not None else None
            ),
            exactly_once=cfg.checkpoint.mode is CheckpointingMode.EXACTLY_ONCE,
            on_done=self._on_task_done,
        )
        try:
            tasks = deploy(graph, env)
        except BaseException as e:
            self._job_failure = e
            return
        with self._cond:
            self._tasks = tasks
            if self._cancel_requested:
                return
            self._status = JobStatus.RUNNING
        if coordinator is not None:
            coordinator.register(tasks)
            self._coordinator = coordinator
            coordinator.start()
        for t in tasks:
            t.start()
        with self._cond:
            while not all(t.state in _DONE for t in tasks):
                self._cond.wait(0.5)
                if (
                    self._cancel_requested
                    or self._job_failure is not None
                    or any(t.state is TaskState.FAILED for t in tasks)
                ):
                    break
        if coordinator is not None:
            coordinator.stop()
        self._join_all()

    def _conclude(self, storage: CheckpointStorage | None) -> None:
        root = self._first_failure
        if root is not None:
            status, error, cause = (
                JobStatus.FAILED,
                task_failure_error(self.graph.job_name, root, self.restarts),
                root.failure,
            )
        elif self._job_failure is not None:
            e = self._job_failure
            status, error, cause = (
                JobStatus.FAILED,
                JobExecutionError(f"Job {self.graph.job_name!r} failed: {e}"),
                e,
            )
        elif self.cancel_requested:
            status, error, cause = JobStatus.CANCELED, self._cancelled_error(), None
        else:
            status, error, cause = JobStatus.FINISHED, None, None
        retention = self.graph.config.checkpoint.retention
        if (
            storage is not None
            and status is not JobStatus.FAILED
            and retention is ExternalizedCheckpointRetention.DELETE_ON_CANCELLATION
        ):
            storage.discard_run()
        self._finish(status, error, cause)

    def _join_all(self) -> None:
        join_tasks(self._tasks, CANCEL_GRACE_SECONDS)

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
        with _RUNNING_LOCK:
            _RUNNING.pop(self.job_id, None)
        self._done.set()


_DONE = (TaskState.FINISHED, TaskState.CANCELED, TaskState.FAILED)
__all__ = [
    "InvalidJobError",
    "LocalJobClient",
    "deploy",
    "load_restore_point",
    "running_jobs",
    "stopped_with_savepoint",
]
