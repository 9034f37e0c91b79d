"""Deployment of a ``JobGraph`` in this process: tasks wired by gates and record writers, the
state to restore them from, and the end of their threads.

``deploy`` creates (and does not start) one ``Task`` per subtask of every vertex, with an
``InputGate`` per subtask that has inputs and a ``RecordWriterOutput`` per outgoing edge;
``load_restore_point`` loads and checks the checkpoint or savepoint a job starts from;
``join_tasks`` waits for task threads after a run, cancelling and finally abandoning stragglers.
"""

from __future__ import annotations

import logging
import time

from strom.runtime.channels import InputGate
from strom.runtime.checkpoint import storage as ckpt_storage
from strom.runtime.checkpoint.storage import CompletedCheckpoint
from strom.runtime.jobgraph import JobGraph
from strom.runtime.task import RecordWriterOutput, Task, TaskEnvironment, TaskState

__all__ = ["deploy", "join_tasks", "load_restore_point"]

# the executor's logger: restores and abandoned tasks are part of running a job
log = logging.getLogger("strom.executor")


def deploy(graph: JobGraph, env: TaskEnvironment) -> list[Task]:
    """Create gates, record writers and tasks for every subtask (nothing started)."""
    capacity = graph.config.channel_capacity
    gates: dict[tuple[int, int], InputGate] = {}
    channel_offset: dict[int, int] = {}  # edge index -> first channel in the target gates
    channel_inputs: dict[int, list[int]] = {}  # vertex -> input index of each gate channel
    for v in graph.vertices:
        offset = 0
        inputs: list[int] = []
        for idx, e in enumerate(graph.edges):
            if e.target_vertex != v.id:
                continue
            channel_offset[idx] = offset
            count = 1 if e.is_forward else graph.vertex(e.source_vertex).parallelism
            offset += count
            inputs.extend([e.target_input] * count)
        channel_inputs[v.id] = inputs
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
                outputs[e.source_operator].append(RecordWriterOutput(partitioner, targets, e.tag))
            tasks.append(Task(v, s, env, gates.get((v.id, s)), outputs, channel_inputs[v.id]))
    return tasks


def load_restore_point(graph: JobGraph) -> CompletedCheckpoint | None:
    """Load ``config.restore_path`` and check it fits the job; clear errors otherwise."""
    cfg = graph.config
    if cfg.restore_path is None:
        return None
    options = cfg.checkpoint.storage_options
    path = ckpt_storage.resolve(cfg.restore_path, cfg.checkpoint.storage, graph.job_name, options)
    restored = ckpt_storage.load(path, options, cfg.state_serializer)
    max_par = {v.max_parallelism for v in graph.vertices}
    if restored.max_parallelism not in max_par:
        raise ckpt_storage.CheckpointRestoreError(
            f"{path}: written with max parallelism {restored.max_parallelism}, the job has "
            f"{sorted(max_par)}; key groups cannot be remapped"
        )
    uids = {o.uid for v in graph.vertices for o in v.operators}
    unknown = sorted(u for u, snaps in restored.operators.items() if u not in uids and any(snaps))
    if unknown and not cfg.allow_non_restored_state:
        raise ckpt_storage.CheckpointRestoreError(
            f"{path}: state of operator(s) {', '.join(unknown)} matches no operator of the job "
            "(set a uid() on stateful operators; or allow non-restored state to drop it)"
        )
    generated = sorted(u for u in uids if u.startswith("auto-") and u in restored.operators)
    if generated:
        log.warning(
            "restoring state by generated operator ids %s: give stateful operators a uid() so "
            "a changed job still finds its state",
            ", ".join(generated),
        )
    log.info("restoring from %s (checkpoint %d)", path, restored.checkpoint_id)
    return restored


def join_tasks(tasks: list[Task], grace_seconds: float) -> None:
    """Wait up to ``grace_seconds`` in all for the threads of started tasks; cancel a task still
    running after its share, and abandon (with an error log) one that ignores that too."""
    deadline = time.monotonic() + grace_seconds
    for t in tasks:
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
                    grace_seconds,
                )
