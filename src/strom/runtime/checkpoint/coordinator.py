"""The checkpoint coordinator: asynchronous barrier snapshots, as in Flink.

1. Every ``interval`` (after ``min_pause`` since the last one, one at a time) the coordinator
   posts "trigger checkpoint *n*" to the mailbox of every running source task, and of every
   task whose input has ended but which waits for its final checkpoint.
2. A triggered task flushes, snapshots its operators, sends barrier *n* downstream and
   acknowledges; a task with inputs aligns barrier *n* on all channels first (exactly-once) or
   just counts them (at-least-once), then does the same.
3. ``acknowledge`` runs in the task thread and only serializes the snapshot (the short
   synchronous part); writing it to storage happens on a writer thread, so processing goes on.
4. When every task has acknowledged and every write is done, the metadata is committed
   atomically, then ``notify_checkpoint_complete(n)`` is posted to every task: sinks commit,
   sources commit offsets. Older checkpoints beyond ``max_retained`` are deleted.
5. A checkpoint that is not complete within ``timeout`` is aborted
   (``notify_checkpoint_aborted``); more than ``tolerable_failures`` aborts in a row fail the
   job.

Tasks that finished keep the snapshot of the checkpoint they last took part in (their final
state); it is written again into every later checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from strom.errors import StromError
from strom.runtime.checkpoint.config import CheckpointConfig
from strom.runtime.checkpoint.storage import (
    CheckpointStorage,
    CompletedCheckpoint,
    serializer_name,
)
from strom.runtime.elements import CheckpointBarrier
from strom.runtime.state.serializer import StateSerializer, default_serializer

if TYPE_CHECKING:
    from strom.runtime.task import Task

log = logging.getLogger("strom.checkpoint")

TaskKey = tuple[int, int]


def _broken_states() -> tuple[Any, ...]:
    from strom.runtime.task import TaskState

    return (TaskState.FAILED, TaskState.CANCELED)


class CheckpointFailure(StromError):
    """Too many checkpoints failed in a row (more than the tolerable number)."""


@dataclass
class CheckpointStats:
    checkpoint_id: int
    is_savepoint: bool
    duration_ms: int
    size_bytes: int
    alignment_ms: int
    path: str


@dataclass
class _Pending:
    checkpoint_id: int
    timestamp: int
    directory: str
    is_savepoint: bool
    started: float
    waiting: set[TaskKey]
    writes_in_flight: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    data: dict[TaskKey, bytes] = field(default_factory=dict)
    alignment_ms: int = 0
    future: Future[CompletedCheckpoint] = field(default_factory=Future)
    aborted: bool = False
    barrier: CheckpointBarrier = field(default_factory=lambda: CheckpointBarrier(0, 0))
    triggered: set[TaskKey] = field(default_factory=set)


class CheckpointCoordinator:
    def __init__(
        self,
        config: CheckpointConfig,
        storage: CheckpointStorage,
        *,
        job_name: str,
        max_parallelism: int,
        wall_clock: Callable[[], int],
        on_failure: Callable[[BaseException], None],
        first_id: int = 1,
        final_snapshots: dict[TaskKey, bytes] | None = None,
        serializer: StateSerializer | None = None,
    ) -> None:
        self.serializer = serializer or default_serializer()
        self.config = config
        self.storage = storage
        self.job_name = job_name
        self.max_parallelism = max_parallelism
        self._wall_clock = wall_clock
        self._on_failure = on_failure
        self._next_id = first_id
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._tasks: dict[TaskKey, Task] = {}
        self._pending: _Pending | None = None
        self._last_done = 0.0
        self._consecutive_failures = 0
        self._final: dict[TaskKey, bytes] = dict(final_snapshots or {})
        self._completed_dirs: list[str] = []
        self._latest: tuple[int, dict[TaskKey, bytes]] | None = None
        self._requested: list[tuple[bool, str | None, Future[CompletedCheckpoint]]] = []
        self._stopped = False
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="checkpoint-writer")
        self._thread = threading.Thread(
            target=self._loop, name="checkpoint-coordinator", daemon=True
        )
        self.stats: list[CheckpointStats] = []

    # -- lifecycle ------------------------------------------------------------------------
    def register(self, tasks: list[Task]) -> None:
        for t in tasks:
            self._tasks[(t.vertex.id, t.subtask_index)] = t

    def start(self) -> None:
        self._last_done = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            pending = self._pending
            self._pending = None
            requested, self._requested = self._requested, []
            self._wakeup.notify_all()
        if pending is not None and not pending.future.done():
            pending.future.set_exception(StromError("checkpoint coordinator stopped"))
        for _, _, fut in requested:
            if not fut.done():
                fut.set_exception(StromError("checkpoint coordinator stopped"))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        self._writer.shutdown(wait=True)

    @property
    def next_id(self) -> int:
        return self._next_id

    def latest_completed(self) -> CompletedCheckpoint | None:
        """The newest completed checkpoint, rebuilt from its bytes (fresh objects)."""
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        cid, data = latest
        operators: dict[str, list[dict[str, Any]]] = {}
        for blob in data.values():
            for uid, snap in self.serializer.loads(blob).items():
                operators.setdefault(uid, []).append(snap)
        return CompletedCheckpoint(
            checkpoint_id=cid,
            timestamp=0,
            path=self.storage.checkpoint_dir(cid),
            job_name=self.job_name,
            max_parallelism=self.max_parallelism,
            is_savepoint=False,
            operators=operators,
        )

    def final_snapshots(self) -> dict[TaskKey, bytes]:
        with self._lock:
            return dict(self._final)

    # -- triggering -----------------------------------------------------------------------
    def trigger(self, *, savepoint_dir: str | None = None) -> Future[CompletedCheckpoint]:
        """Take a checkpoint (or a savepoint into ``savepoint_dir``) as soon as possible."""
        fut: Future[CompletedCheckpoint] = Future()
        with self._lock:
            if self._stopped:
                fut.set_exception(StromError("the job is not running"))
                return fut
            self._requested.append((savepoint_dir is not None, savepoint_dir, fut))
            self._wakeup.notify_all()
        return fut

    def request_final_checkpoint(self, task: Task) -> None:
        """A task's input ended and it waits for one more checkpoint: trigger soon.

        If a checkpoint is pending that waits for this task but was never triggered at it (its
        input ended after the trigger, so no barrier will reach it), trigger it now.
        """
        key = (task.vertex.id, task.subtask_index)
        with self._lock:
            pending = self._pending
            if pending is not None and key in pending.waiting and key not in pending.triggered:
                pending.triggered.add(key)
                task.post(partial(task.trigger_checkpoint, pending.barrier))
            self._final_requested = True
            self._wakeup.notify_all()

    _final_requested = False

    def _loop(self) -> None:
        interval = self.config.interval_ms / 1000
        min_pause = self.config.min_pause_ms / 1000
        timeout = self.config.timeout_ms / 1000
        try:
            with self._lock:
                while not self._stopped:
                    now = time.monotonic()
                    pending = self._pending
                    if pending is not None:
                        if now - pending.started > timeout:
                            self._abort(pending, "timed out")
                            continue
                        self._wakeup.wait(min(0.05, timeout))
                        continue
                    since = now - self._last_done
                    due = since >= max(interval, min_pause)
                    urgent = (self._requested or self._final_requested) and since >= min_pause
                    if due or urgent:
                        self._start_checkpoint()
                        continue
                    wait_for = max(interval, min_pause) - since
                    if self._requested or self._final_requested:
                        wait_for = min_pause - since
                    self._wakeup.wait(max(0.005, min(wait_for, 0.25)))
        except BaseException as e:  # a coordinator bug must fail the job, not hang it
            log.exception("checkpoint coordinator failed")
            self._on_failure(e)

    def _start_checkpoint(self) -> None:
        is_savepoint, savepoint_dir, requested_future = False, None, None
        if self._requested:
            is_savepoint, savepoint_dir, requested_future = self._requested.pop(0)
        self._final_requested = False
        cid = self._next_id
        self._next_id += 1
        ts = self._wall_clock()
        directory = savepoint_dir if savepoint_dir is not None else self.storage.checkpoint_dir(cid)
        if any(t.state in _broken_states() for t in self._tasks.values()):
            # a task failed or was cancelled: the job is going down, and a checkpoint now
            # could only be incomplete — never start one
            if requested_future is not None and not requested_future.done():
                requested_future.set_exception(StromError("the job is failing or cancelled"))
            self._next_id -= 1
            self._last_done = time.monotonic()
            return
        running = {k: t for k, t in self._tasks.items() if not t.is_finished}
        pending = _Pending(
            checkpoint_id=cid,
            timestamp=ts,
            directory=directory,
            is_savepoint=is_savepoint,
            started=time.monotonic(),
            waiting=set(running),
        )
        if requested_future is not None:
            pending.future = requested_future
        self._pending = pending
        for key, blob in self._final.items():
            if key not in running:
                pending.data[key] = blob
                self._write(pending, key, blob)
        barrier = CheckpointBarrier(cid, ts, is_savepoint)
        pending.barrier = barrier
        for key, task in running.items():
            if task.vertex.is_source or task.input_ended:
                pending.triggered.add(key)
                task.post(partial(task.trigger_checkpoint, barrier))
        log.debug(
            "triggered %s %d at %d task(s)",
            "savepoint" if is_savepoint else "checkpoint",
            cid,
            len(pending.triggered),
        )
        if not pending.waiting and pending.writes_in_flight == 0:
            self._complete(pending)

    # -- acknowledgements (task threads) --------------------------------------------------
    def acknowledge(
        self, task: Task, checkpoint_id: int, snapshot: dict[str, Any], alignment_ms: int
    ) -> None:
        key = (task.vertex.id, task.subtask_index)
        data = self.serializer.dumps(snapshot)  # the synchronous part: state may change after
        with self._lock:
            pending = self._pending
            if (
                pending is None
                or pending.checkpoint_id != checkpoint_id
                or key not in pending.waiting
            ):
                return
            pending.data[key] = data
            pending.alignment_ms = max(pending.alignment_ms, alignment_ms)
            if task.input_ended:
                self._final[key] = data
            # no longer waiting *before* the write: a write that is already done completes the
            # checkpoint from inside _write (its callback runs at once, in this thread)
            pending.waiting.discard(key)
            self._write(pending, key, data)

    def _write(self, pending: _Pending, key: TaskKey, data: bytes) -> None:
        pending.writes_in_flight += 1
        name = f"task-{key[0]}-{key[1]}.state"
        fut = self._writer.submit(self.storage.write_state, pending.directory, name, data)
        fut.add_done_callback(lambda f: self._written(pending, f))

    def _written(self, pending: _Pending, fut: Future[dict[str, Any]]) -> None:
        with self._lock:
            pending.writes_in_flight -= 1
            if pending.aborted or self._pending is not pending:
                return
            exc = fut.exception()
            if exc is not None:
                self._abort(pending, f"writing state failed: {exc}")
                return
            pending.files.append(fut.result())
            if not pending.waiting and pending.writes_in_flight == 0:
                self._complete(pending)

    # -- completion -----------------------------------------------------------------------
    def _complete(self, pending: _Pending) -> None:
        missing = set(self._tasks) - set(pending.data)
        if missing:  # a checkpoint must hold every task's state, or it must not exist
            self._abort(pending, f"no state from task(s) {sorted(missing)}")
            return
        metadata = {
            "checkpoint_id": pending.checkpoint_id,
            "timestamp": pending.timestamp,
            "job_name": self.job_name,
            "max_parallelism": self.max_parallelism,
            "is_savepoint": pending.is_savepoint,
            "serializer": serializer_name(self.serializer),
            "files": sorted(pending.files, key=lambda f: f["file"]),
        }
        try:
            self.storage.commit(pending.directory, metadata)
        except Exception as e:
            self._abort(pending, f"committing metadata failed: {e}")
            return
        self._pending = None
        self._last_done = time.monotonic()
        self._consecutive_failures = 0
        cid = pending.checkpoint_id
        size = sum(f["size"] for f in pending.files)
        duration = int((time.monotonic() - pending.started) * 1000)
        self.stats.append(
            CheckpointStats(
                cid, pending.is_savepoint, duration, size, pending.alignment_ms, pending.directory
            )
        )
        log.info(
            "%s %d complete: %d bytes in %d ms (alignment %d ms) at %s",
            "savepoint" if pending.is_savepoint else "checkpoint",
            cid,
            size,
            duration,
            pending.alignment_ms,
            pending.directory,
        )
        if not pending.is_savepoint:
            self._latest = (cid, dict(pending.data))
            self._completed_dirs.append(pending.directory)
            while len(self._completed_dirs) > self.config.max_retained:
                old = self._completed_dirs.pop(0)
                self._writer.submit(self.storage.discard, old)
        for task in self._tasks.values():
            if not task.is_finished:
                task.post(partial(task.notify_checkpoint_complete, cid))
        completed = CompletedCheckpoint(
            checkpoint_id=cid,
            timestamp=pending.timestamp,
            path=pending.directory,
            job_name=self.job_name,
            max_parallelism=self.max_parallelism,
            is_savepoint=pending.is_savepoint,
            size_bytes=size,
        )
        if not pending.future.done():
            pending.future.set_result(completed)
        self._wakeup.notify_all()

    def _abort(self, pending: _Pending, reason: str) -> None:
        pending.aborted = True
        self._pending = None
        self._last_done = time.monotonic()
        cid = pending.checkpoint_id
        log.warning("checkpoint %d aborted: %s", cid, reason)
        if not pending.is_savepoint:
            self._writer.submit(self.storage.discard, pending.directory)
        for task in self._tasks.values():
            if not task.is_finished:
                task.post(partial(task.notify_checkpoint_aborted, cid))
        if not pending.future.done():
            pending.future.set_exception(StromError(f"checkpoint {cid} aborted: {reason}"))
        self._consecutive_failures += 1
        if self._consecutive_failures > self.config.tolerable_failures:
            self._on_failure(
                CheckpointFailure(
                    f"{self._consecutive_failures} checkpoint(s) failed in a row, more than the "
                    f"tolerable {self.config.tolerable_failures}; last: checkpoint {cid} {reason}"
                )
            )
        self._wakeup.notify_all()
