"""A task: one subtask of a job vertex, running its operator chain in one thread.

The loop of a non-source task takes elements from its ``InputGate`` and dispatches by type:
record batches go to the head operator (and on down the chain by plain calls), watermarks are
combined (minimum over channels), checkpoint barriers are aligned, end-of-input is counted.
A source task instead runs its head's loop, which checks the task's mailbox between batches.
The mailbox carries actions other threads ask the task thread to run (checkpoint triggers and
notifications), so operators are only ever touched by one thread at a time.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from strom.functions import SourceCancelled
from strom.metrics import Counter, MetricGroup
from strom.runtime.channels import ChannelCancelled, InputGate
from strom.runtime.context import AccumulatorRegistry, OperatorContext
from strom.runtime.elements import (
    END_OF_INPUT,
    MAX_WATERMARK,
    MIN_WATERMARK,
    CheckpointBarrier,
    EndOfInput,
    RecordBatch,
    Watermark,
    WatermarkStatus,
)
from strom.runtime.jobgraph import JobConfig, JobVertex
from strom.runtime.keygroups import key_group_range
from strom.runtime.operators.base import (
    BroadcastingOutput,
    ChainedOutput,
    NullOutput,
    OperatorFailure,
    Output,
    StreamOperator,
)
from strom.runtime.operators.sources import SourceOperator
from strom.runtime.partitioners import Partitioner
from strom.runtime.state import create_keyed_backend


class TaskState(Enum):
    CREATED = "created"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELED = "canceled"
    FAILED = "failed"


class RecordWriterOutput(Output):
    """Sends an operator's output over one job edge: partition, then put into the target gates.

    ``targets[j]`` is ``(gate, channel)`` of downstream subtask *j*, or None where this subtask
    has no channel to *j* (forward edges connect only equal indices).
    """

    def __init__(
        self,
        partitioner: Partitioner,
        targets: list[tuple[InputGate, int] | None],
        tag: str | None = None,
    ) -> None:
        self.partitioner = partitioner
        self.targets = targets
        self.tag = tag
        self.records_out = Counter()

    def emit(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.records_out.count += len(values)
        targets = self.targets
        for ch, vs, ts in self.partitioner.split(values, timestamps):
            target = targets[ch]
            assert target is not None, f"no channel to subtask {ch}"
            target[0].put(target[1], RecordBatch(vs, ts))

    def emit_watermark(self, watermark: int) -> None:
        self.broadcast_event(Watermark(watermark))

    def emit_watermark_status(self, idle: bool) -> None:
        self.broadcast_event(WatermarkStatus(idle))

    def broadcast_event(self, event: Any, *, force: bool = False) -> None:
        for target in self.targets:
            if target is not None:
                target[0].put(target[1], event, force=force)


def _combine(outs: list[Output]) -> Output:
    if not outs:
        return NullOutput()
    return outs[0] if len(outs) == 1 else BroadcastingOutput(outs)


@dataclass
class TaskEnvironment:
    """What the executor gives every task."""

    job_name: str
    config: JobConfig
    attempt: int
    accumulators: AccumulatorRegistry
    metrics: MetricGroup
    processing_time: Callable[[], int]
    restored_state: Callable[[str], list[dict[str, Any]] | None] = lambda uid: None
    acknowledge: Callable[[Task, int, dict[str, Any], int], None] = lambda t, cid, s, a: None
    request_final_checkpoint: Callable[[Task], None] | None = None
    """Set when checkpointing is on: a task whose input ended waits for one more checkpoint
    (so exactly-once sinks commit everything) before it finishes."""
    exactly_once: bool = True
    on_done: Callable[[Task], None] = lambda t: None
    extra: dict[str, Any] = field(default_factory=dict)


class Task:
    def __init__(
        self,
        vertex: JobVertex,
        subtask_index: int,
        env: TaskEnvironment,
        gate: InputGate | None,
        outputs_per_operator: list[list[RecordWriterOutput]],
        channel_inputs: list[int] | None = None,
    ) -> None:
        self.vertex = vertex
        self.subtask_index = subtask_index
        self.env = env
        self.gate = gate
        self.channel_inputs = channel_inputs or []
        self.name = f"{vertex.name} ({subtask_index + 1}/{vertex.parallelism})"
        self.batch_size = env.config.batch_size
        self.flush_interval = env.config.flush_interval
        self.state = TaskState.CREATED
        self.failure: BaseException | None = None
        self.failed_operator = vertex.operators[0].name
        self.task_traceback = ""
        self._cancelled = False
        self._mailbox: deque[Callable[[], None]] = deque()
        self._mailbox_cond = threading.Condition()
        self._writers = [w for ws in outputs_per_operator for w in ws]
        self._watermark = MIN_WATERMARK
        self.input_ended = False
        self._final_checkpoint: int | None = None
        self._final_done = False
        self._last_checkpoint = 0
        self._alignment_started = 0.0
        self.operators: list[StreamOperator] = []
        self._build_chain(outputs_per_operator)
        self._tickers = [op for op in self.operators if op.uses_ticks]
        self._clock = env.processing_time
        self._idle_out = False
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)

    # -- construction ---------------------------------------------------------------------
    def _build_chain(self, outputs_per_operator: list[list[RecordWriterOutput]]) -> None:
        v, env = self.vertex, self.env
        self.operators = [spec.factory() for spec in v.operators]
        # wire tail-first so each operator's chained outputs exist before it is set up
        for i in reversed(range(len(self.operators))):
            by_tag: dict[str | None, list[Output]] = {None: []}
            for c, tag in v.children(i):
                by_tag.setdefault(tag, []).append(ChainedOutput(self.operators[c]))
            for w in outputs_per_operator[i]:
                by_tag.setdefault(w.tag, []).append(w)
            output = _combine(by_tag.pop(None))
            side_outputs = {tag: _combine(outs) for tag, outs in by_tag.items() if tag}
            spec = v.operators[i]
            ctx = OperatorContext(
                job_name=env.job_name,
                operator_name=spec.name,
                operator_uid=spec.uid,
                subtask_index=self.subtask_index,
                parallelism=v.parallelism,
                max_parallelism=v.max_parallelism,
                attempt=env.attempt,
                metrics=env.metrics.add_group(f"{spec.name}[{self.subtask_index}]"),
                accumulators=env.accumulators,
                processing_time=env.processing_time,
                job_parameters=env.config.job_parameters,
                checkpointing=env.request_final_checkpoint is not None,
                keyed_backend=(
                    create_keyed_backend(
                        env.config.state_backend,
                        v.max_parallelism,
                        key_group_range(self.subtask_index, v.max_parallelism, v.parallelism),
                        clock=env.processing_time,
                        directory=env.config.state_dir,
                        cache_size=env.config.state_cache_size,
                        serializer=env.config.state_serializer,
                        label=f"{spec.uid}-{self.subtask_index}",
                    )
                    if spec.keyed
                    else None
                ),
            )
            self.operators[i].setup(ctx, output, side_outputs)
            if outputs_per_operator[i]:
                shared = ctx.metrics.counter("records_sent")
                for w in outputs_per_operator[i]:
                    w.records_out = shared

    def current_watermark(self) -> int:
        return self._watermark

    @property
    def is_finished(self) -> bool:
        return self.state in (TaskState.FINISHED, TaskState.CANCELED, TaskState.FAILED)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def head(self) -> StreamOperator:
        return self.operators[0]

    # -- mailbox --------------------------------------------------------------------------
    def post(self, action: Callable[[], None]) -> None:
        with self._mailbox_cond:
            self._mailbox.append(action)
            self._mailbox_cond.notify_all()

    def process_mailbox(self) -> None:
        mailbox = self._mailbox
        while mailbox:
            mailbox.popleft()()

    def tick(self) -> None:
        """Let operators that keep time (watermark generators, timers) look at the clock."""
        if self._tickers:
            now = self._clock()
            for op in self._tickers:
                op.tick(now)

    def wait_mailbox(self, timeout: float) -> bool:
        with self._mailbox_cond:
            if not self._mailbox and not self._cancelled:
                self._mailbox_cond.wait(timeout)
            return bool(self._mailbox)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self._cancelled = True
        if self.gate is not None:
            self.gate.cancel()
        head = self.head
        if isinstance(head, SourceOperator):
            try:
                head.cancel()
            except Exception:  # cancellation must reach every task even if one misbehaves
                pass
        with self._mailbox_cond:
            self._mailbox_cond.notify_all()

    def run(self) -> None:
        self.state = TaskState.RUNNING
        opened: list[StreamOperator] = []
        try:
            for spec, op in zip(self.vertex.operators, self.operators, strict=True):
                self.failed_operator = spec.name
                op.initialize_state(self.env.restored_state(spec.uid))
            for spec, op in reversed(list(zip(self.vertex.operators, self.operators, strict=True))):
                self.failed_operator = spec.name
                op.open()
                opened.append(op)
            self.failed_operator = self.vertex.operators[0].name
            head = self.head
            if isinstance(head, SourceOperator):
                head.run(self)
            else:
                self._input_loop()
            if not self._cancelled:
                self._finish_input()
            self.state = TaskState.CANCELED if self._cancelled else TaskState.FINISHED
        except (ChannelCancelled, SourceCancelled) as e:
            if self._cancelled:
                self.state = TaskState.CANCELED
            else:
                self._record_failure(e)
        except BaseException as e:
            if self._cancelled and isinstance(e.__cause__, ChannelCancelled | SourceCancelled):
                self.state = TaskState.CANCELED
            else:
                self._record_failure(e)
        finally:
            for op in opened:
                try:
                    op.close()
                except BaseException as e:
                    if self.state is not TaskState.FAILED and not self._cancelled:
                        self.failed_operator = op.name
                        self._record_failure(e)
            self._close_state_backends()
            self.env.on_done(self)

    def _close_state_backends(self) -> None:
        """Release keyed state (the disk backend removes its files); snapshots taken before
        are already serialized, so nothing needs the state any more."""
        for op in self.operators:
            backend = op.ctx.keyed_backend
            if backend is None:
                continue
            try:
                backend.close()
            except Exception as e:  # on_done must still run, or the job would never finish
                if self.state is not TaskState.FAILED and not self._cancelled:
                    self.failed_operator = op.name
                    self._record_failure(e)

    def _record_failure(self, e: BaseException) -> None:
        original: BaseException = e
        if isinstance(e, OperatorFailure):
            self.failed_operator = e.operator
            original = e.cause
        self.failure = e
        self.task_traceback = "".join(traceback.format_exception(original))
        self.state = TaskState.FAILED

    def _finish_input(self) -> None:
        """End of input: let each operator emit what it holds, take part in one more
        checkpoint (when checkpointing is on), then tell downstream."""
        self.process_mailbox()
        if self.gate is None:
            # a finished source promises no more records: event time jumps to the end, so
            # every window and timer downstream fires (Flink does the same)
            self.head.process_watermark(MAX_WATERMARK)
        for op in self.operators:
            op.end_input()
        request = self.env.request_final_checkpoint
        if request is not None:
            self.input_ended = True
            request(self)
            while not self._final_done:
                if self._cancelled:
                    raise ChannelCancelled()
                self.wait_mailbox(0.1)
                self.process_mailbox()
        for w in self._writers:
            w.broadcast_event(END_OF_INPUT)

    # -- input loop -----------------------------------------------------------------------
    def _input_loop(self) -> None:
        gate = self.gate
        assert gate is not None
        n = gate.num_channels
        head = self.head
        # a head that counts its own input (a sink) is not counted twice
        records_in = head.ctx.metrics.counter(
            "records_in_task" if head.counts_records_in else "records_in"
        )
        if getattr(head, "two_inputs", False):
            sides = (head.process_batch1, head.process_batch2)  # type: ignore[attr-defined]
            route = [sides[i] for i in self.channel_inputs]
        else:
            route = [head.process_batch] * n
        channel_wm = [MIN_WATERMARK] * n
        ended = [False] * n
        self._channel_idle = [False] * n
        remaining = n
        tick = self.tick
        self._aligned: set[int] = set()
        self._pending_barrier: CheckpointBarrier | None = None
        get = gate.get
        while remaining:
            if self._mailbox:
                self.process_mailbox()
            item = get(0.1)
            if item is None:
                tick()
                continue
            ch, element = item
            kind = type(element)
            if kind is RecordBatch:
                records_in.count += len(element.values)
                route[ch](element.values, element.timestamps)
            elif kind is Watermark:
                channel_wm[ch] = element.timestamp
                self._advance_watermark(channel_wm, ended)
            elif kind is WatermarkStatus:
                self._channel_idle[ch] = element.idle
                self._advance_watermark(channel_wm, ended)
            elif kind is CheckpointBarrier:
                self._on_barrier(ch, element, ended)
            elif kind is EndOfInput:
                ended[ch] = True
                remaining -= 1
                if remaining:
                    self._advance_watermark(channel_wm, ended)
                # an ended channel counts as aligned: this may complete a pending checkpoint
                self._check_alignment(ended)
            else:
                raise TypeError(f"unexpected element on channel {ch}: {element!r}")
            tick()

    def _advance_watermark(self, channel_wm: list[int], ended: list[bool]) -> None:
        """The minimum over channels that are neither ended nor idle; when every open channel
        is idle, this task's output goes idle too."""
        idle = self._channel_idle
        open_channels = [i for i, done in enumerate(ended) if not done]
        live = [channel_wm[i] for i in open_channels if not idle[i]]
        if open_channels and not live:
            if not self._idle_out:
                self._idle_out = True
                self.head.process_watermark_status(True)
            return
        if self._idle_out:
            self._idle_out = False
            self.head.process_watermark_status(False)
        new = min(live) if live else max(channel_wm)
        if new > self._watermark:
            self._watermark = new
            self.head.process_watermark(new)

    # -- checkpoints ----------------------------------------------------------------------
    def _on_barrier(self, ch: int, barrier: CheckpointBarrier, ended: list[bool]) -> None:
        pending = self._pending_barrier
        if pending is None or barrier.checkpoint_id > pending.checkpoint_id:
            if pending is not None:
                self.gate.unblock_all()  # type: ignore[union-attr]  # newer barrier supersedes
            self._pending_barrier = barrier
            self._aligned = set()
        elif barrier.checkpoint_id < pending.checkpoint_id:
            return
        if not self._aligned:
            self._alignment_started = time.monotonic()
        self._aligned.add(ch)
        if self.env.exactly_once:
            self.gate.block(ch)  # type: ignore[union-attr]
        self._check_alignment(ended)

    def _check_alignment(self, ended: list[bool]) -> None:
        barrier = self._pending_barrier
        if barrier is None:
            return
        if all(done or ch in self._aligned for ch, done in enumerate(ended)):
            self._pending_barrier = None
            self._aligned = set()
            if self.gate is not None:
                self.gate.unblock_all()
            self.perform_checkpoint(barrier)

    def trigger_checkpoint(self, barrier: CheckpointBarrier) -> None:
        """Mailbox action posted by the coordinator to sources and input-ended tasks."""
        if self._cancelled or self.is_finished or barrier.checkpoint_id <= self._last_checkpoint:
            return
        self._alignment_started = time.monotonic()
        self.perform_checkpoint(barrier)

    def perform_checkpoint(self, barrier: CheckpointBarrier) -> None:
        """Flush, snapshot every operator, forward the barrier, acknowledge. Task thread only."""
        cid, ts = barrier.checkpoint_id, barrier.timestamp
        alignment_ms = int((time.monotonic() - self._alignment_started) * 1000)
        self._last_checkpoint = cid
        if self.input_ended:
            self._final_checkpoint = cid
        for op in self.operators:
            op.prepare_snapshot(cid)
        snapshot = {
            spec.uid: op.snapshot_state(cid, ts)
            for spec, op in zip(self.vertex.operators, self.operators, strict=True)
        }
        for w in self._writers:
            w.broadcast_event(barrier)
        self.env.acknowledge(self, cid, snapshot, alignment_ms)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for op in self.operators:
            op.notify_checkpoint_complete(checkpoint_id)
        final = self._final_checkpoint
        if final is not None and checkpoint_id >= final:
            self._final_done = True

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        for op in self.operators:
            op.notify_checkpoint_aborted(checkpoint_id)

    def records_out(self) -> int:
        return sum(w.records_out.count for w in self._writers)
