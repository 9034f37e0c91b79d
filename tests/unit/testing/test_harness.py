"""The function harnesses: drive a SourceFunction / SinkFunction / reader / writer without a job,
snapshot mid-run, and restore (also at another parallelism) with nothing lost or duplicated."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from strom.connectors.base import Sink, SinkWriter, WriterContext
from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    RichParallelSourceFunction,
    RuntimeContext,
    SinkContext,
    SinkFunction,
    SourceContext,
    SourceFunction,
)
from strom.state import ListStateDescriptor
from strom.testing import (
    ManualClock,
    SinkFunctionHarness,
    SinkWriterHarness,
    SourceFunctionHarness,
    SourceReaderHarness,
    TestingSink,
    TestingSource,
)

# -- a parallel source that checkpoints its position (seed §3.2) ----------------------------


class CountingSource(RichParallelSourceFunction[int], CheckpointedFunction):
    """Emits ``range(end)``, split into ``SPLITS`` strided splits dealt to the subtasks.

    The list state holds one ``(split, next value)`` entry per split the subtask owns, so on a
    rescale the runtime deals whole splits to the new subtasks.
    """

    SPLITS = 6

    def __init__(self, end: int, delay: float = 0.0) -> None:
        self.end = end
        self.delay = delay
        self.running = True
        self.splits: dict[int, int] | None = None

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self.state = ctx.get_operator_state_store().get_list_state(ListStateDescriptor("splits"))
        if ctx.is_restored():
            self.splits = dict(self.state.get())

    def open(self, runtime_context: RuntimeContext) -> None:
        if self.splits is None:  # fresh start: take the splits this subtask owns
            me = runtime_context.get_index_of_this_subtask()
            n = runtime_context.get_number_of_parallel_subtasks()
            self.splits = {s: s for s in range(self.SPLITS) if s % n == me}

    def run(self, ctx: SourceContext[int]) -> None:
        splits = self.splits
        assert splits is not None
        while self.running and any(v < self.end for v in splits.values()):
            for split, value in splits.items():
                if value < self.end:
                    with ctx.get_checkpoint_lock():
                        ctx.collect(value)
                        splits[split] = value + self.SPLITS
            if self.delay:
                time.sleep(self.delay)

    def cancel(self) -> None:
        self.running = False

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        assert self.splits is not None
        self.state.update(sorted(self.splits.items()))


def test_counting_source_restored_at_higher_parallelism_loses_and_duplicates_nothing() -> None:
    end = 3_000
    with SourceFunctionHarness(CountingSource(end, delay=0.0005)) as first:
        first.start()
        first.take(200)
        snap = first.snapshot(7)
        first.take(50)  # it keeps running after the snapshot, as in a job
    before = first.output_before(7)
    assert 200 <= len(before) < end
    assert len(first.output) > len(before)

    # everything emitted after the snapshot is what a failure would lose; a restore replays it
    restored = [
        SourceFunctionHarness(CountingSource(end), i, 2, restored_state=[snap]).start()
        for i in range(2)
    ]
    after = [h.join() for h in restored]
    assert all(after), "both new subtasks got splits to read"
    emitted = Counter(before + after[0] + after[1])
    assert sorted(emitted) == list(range(end))
    assert max(emitted.values()) == 1


def test_counting_source_scales_down_from_two_subtasks_to_one() -> None:
    end = 600
    snaps = []
    before: list[int] = []
    for i in range(2):
        h = SourceFunctionHarness(CountingSource(end, delay=0.001), i, 2).start()
        h.take(30)
        snaps.append(h.snapshot(1))
        h.cancel()
        before += h.output_before(1)
    rest = SourceFunctionHarness(CountingSource(end), restored_state=snaps).start().join()
    assert sorted(before + rest) == list(range(end))


def test_snapshot_is_taken_under_the_checkpoint_lock_with_pending_elements_emitted() -> None:
    """With big batches elements wait in the context's buffer; a snapshot must flush them first,
    or the position in the snapshot would be ahead of what went downstream."""
    with SourceFunctionHarness(CountingSource(10_000, delay=0.0002), batch_size=1000) as h:
        h.start()
        time.sleep(0.05)
        snap = h.snapshot()
        emitted = h.output_before(1)
        positions = dict(snap["operator"]["list"]["splits"])
    assert len(emitted) > 0
    # every value below each split's position was emitted, none at or above it
    expected = {v for split, pos in positions.items() for v in range(split, pos, 6)}
    assert set(emitted) == expected


# -- what the harness catches ----------------------------------------------------------------


class _StubbornSource(SourceFunction[int]):
    """Never emits and ignores cancel(): the seed's reference job never stopped like this."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, ctx: SourceContext[int]) -> None:
        while not self.release.wait(0.01):
            pass

    def cancel(self) -> None:
        pass  # the bug


def test_cancel_raises_when_run_ignores_cancel() -> None:
    source = _StubbornSource()
    h = SourceFunctionHarness(source).start()
    try:
        with pytest.raises(TimeoutError, match=r"did not return within 0.2 s of cancel"):
            h.cancel(timeout=0.2)
    finally:
        source.release.set()
    h.cancel()  # now it returns


class _LockHogSource(SourceFunction[int]):
    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, ctx: SourceContext[int]) -> None:
        with ctx.get_checkpoint_lock():  # waits for data while holding the lock: a bug
            ctx.collect(1)
            self.release.wait(5)

    def cancel(self) -> None:
        self.release.set()


def test_snapshot_times_out_when_run_holds_the_checkpoint_lock_while_waiting() -> None:
    with SourceFunctionHarness(_LockHogSource()) as h:
        h.start()
        assert h.take(1) == [1]
        with pytest.raises(TimeoutError, match="checkpoint lock was not free"):
            h.snapshot(timeout=0.2)


class _FailingSource(SourceFunction[int]):
    def run(self, ctx: SourceContext[int]) -> None:
        ctx.collect(1)
        raise ConnectionError("upstream went away")

    def cancel(self) -> None:
        pass


def test_failure_of_run_is_raised_by_take_and_otherwise_by_cancel() -> None:
    h = SourceFunctionHarness(_FailingSource()).start()
    with pytest.raises(ConnectionError, match="went away"):
        h.take(2)
    h.cancel()  # already reported: no second raise

    h = SourceFunctionHarness(_FailingSource()).start()
    while h.running:
        time.sleep(0.005)
    assert isinstance(h.failure, ConnectionError)
    with pytest.raises(ConnectionError):  # not reported yet: cancel() must not swallow it
        h.cancel()


def test_take_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="call start"):
        SourceFunctionHarness(_FailingSource()).take(1)


class _TimedSource(SourceFunction[str]):
    def run(self, ctx: SourceContext[str]) -> None:
        with ctx.get_checkpoint_lock():
            ctx.collect_with_timestamp("a", 1_000)
            ctx.emit_watermark(999)
            ctx.collect_with_timestamp("b", 2_000)
            ctx.collect("c")

    def cancel(self) -> None:
        pass


def test_timestamps_and_watermarks_are_collected() -> None:
    h = SourceFunctionHarness(_TimedSource()).start()
    assert h.join() == ["a", "b", "c"]
    assert h.timestamps == [1_000, 2_000, None]
    assert h.watermarks == [999]
    h.close()


def test_only_parallel_source_functions_run_with_parallelism_above_one() -> None:
    with pytest.raises(ValueError, match="not a ParallelSourceFunction"):
        SourceFunctionHarness(_TimedSource(), 0, 2)
    with pytest.raises(ValueError, match="subtask_index"):
        SourceFunctionHarness(CountingSource(1), 2, 2)


class _ListeningSource(CountingSource):
    def __init__(self, end: int) -> None:
        super().__init__(end, delay=0.001)
        self.completed: list[int] = []

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.completed.append(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        pass


def test_checkpoint_notifications_reach_a_running_source() -> None:
    source = _ListeningSource(100_000)
    with SourceFunctionHarness(source) as h:
        h.start()
        h.snapshot(3)
        h.notify_checkpoint_complete(3)
    assert source.completed == [3]


# -- a buffering sink that keeps unflushed elements in state (seed §3.4) -------------------


class BufferingSink(SinkFunction[Any], CheckpointedFunction):
    """Writes in groups of ``threshold``; elements not yet written live in operator state."""

    def __init__(self, threshold: int, written: list[Any]) -> None:
        self.threshold = threshold
        self.written = written
        self.buffer: list[Any] = []

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self.state = ctx.get_operator_state_store().get_list_state(ListStateDescriptor("buffered"))
        if ctx.is_restored():
            self.buffer.extend(self.state.get())

    def invoke(self, value: Any, context: SinkContext) -> None:
        self.buffer.append(value)
        if len(self.buffer) >= self.threshold:
            self.written.extend(self.buffer)
            self.buffer.clear()

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        self.state.update(self.buffer)


def test_buffering_sink_restores_its_unflushed_elements() -> None:
    written: list[int] = []
    with SinkFunctionHarness(BufferingSink(3, written)) as h:
        h.invoke_all(range(5))
        snap = h.snapshot()
    assert written == [0, 1, 2]
    assert snap["operator"]["list"]["buffered"] == [3, 4]

    # the old subtask is gone (a failure); the restored one carries on with its buffer
    with SinkFunctionHarness(BufferingSink(3, written), restored_state=[snap]) as h:
        h.invoke(5)
    assert written == [0, 1, 2, 3, 4, 5]


def test_buffering_sink_state_is_dealt_among_subtasks_on_rescale() -> None:
    written: list[int] = []
    h = SinkFunctionHarness(BufferingSink(10, written))
    h.invoke_all(range(5))
    snap = h.snapshot()
    h.close()
    buffers = []
    for i in range(2):
        restored = SinkFunctionHarness(BufferingSink(10, written), i, 2, restored_state=[snap])
        buffers.append(restored.function.buffer)  # type: ignore[attr-defined]
        restored.close()
    assert buffers == [[0, 2, 4], [1, 3]]


class _ContextProbe(SinkFunction[str]):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, int, int]] = []

    def invoke(self, value: str, context: SinkContext) -> None:
        if value == "bad":
            raise ValueError("bad record")
        self.seen.append(
            (
                value,
                context.timestamp(),
                context.current_processing_time(),
                context.current_watermark(),
            )
        )


def test_sink_harness_context_and_errors() -> None:
    clock = ManualClock(5)
    probe = _ContextProbe()
    with SinkFunctionHarness(probe, processing_time=clock) as h:
        h.invoke("a", timestamp=10)
        clock.advance(10)
        h.watermark = 9
        h.invoke_all(["b", "c"], [11, 12])
        with pytest.raises(ValueError, match="bad record"):  # the user's error, unwrapped
            h.invoke("bad")
    assert probe.seen == [("a", 10, 5, -(2**63)), ("b", 11, 15, 9), ("c", 12, 15, 9)]


# -- the pull-based contract -----------------------------------------------------------------


def test_source_reader_harness_polls_snapshots_and_restores() -> None:
    source = TestingSource(range(10), batch_size=3)
    with SourceReaderHarness(source) as h:
        assert h.poll() == [0, 1, 2]
        snap = h.snapshot()
        assert h.poll_all() == [3, 4, 5, 6, 7, 8, 9]
        assert h.finished
        assert h.poll() is None
        assert h.output == list(range(10))
    with SourceReaderHarness(source, restored_state=[snap]) as h:
        assert h.poll_all(max_batches=1) == [3, 4, 5]
        assert h.poll_all() == [6, 7, 8, 9]


def test_source_reader_harness_rejects_more_subtasks_than_the_source_supports() -> None:
    with pytest.raises(ValueError, match="supports 1 subtask"):
        SourceReaderHarness(TestingSource([1]), 0, 2)


class _StagingSink(Sink[str]):
    """Writes land in ``staged`` and are committed when a checkpoint completes (2PC-like)."""

    def __init__(self) -> None:
        self.committed: list[str] = []

    def create_writer(self, ctx: WriterContext) -> SinkWriter[str]:
        return _StagingWriter(self)


class _StagingWriter(SinkWriter[str]):
    def __init__(self, sink: _StagingSink) -> None:
        self.sink = sink
        self.staged: list[str] = []
        self.pending: dict[int, list[str]] = {}

    def open(self, restored_state: list[Any] | None) -> None:
        for _, records in restored_state or []:
            self.sink.committed.extend(records)  # committing again is the recovery step

    def write(self, values: list[str], timestamps: list[int] | None) -> None:
        self.staged.extend(values)

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self.pending[checkpoint_id], self.staged = self.staged, []
        return [(checkpoint_id, list(self.pending[checkpoint_id]))]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.sink.committed.extend(self.pending.pop(checkpoint_id))


def test_sink_writer_harness_drives_checkpoint_and_commit() -> None:
    sink = _StagingSink()
    with SinkWriterHarness(sink) as h:
        h.write(["a", "b"])
        snap = h.snapshot()
        assert sink.committed == []
        h.notify_checkpoint_complete(1)
        assert sink.committed == ["a", "b"]
        h.write(["c"])
        snap = h.snapshot()
    # crash before the completion of checkpoint 2: a restore commits what it prepared
    with SinkWriterHarness(sink, restored_state=[snap]):
        pass
    assert sink.committed == ["a", "b", "c"]


def test_sink_writer_harness_with_testing_sink() -> None:
    sink: TestingSink[int] = TestingSink()
    with SinkWriterHarness(sink, 1, 2) as h:
        h.write([1, 2], [10, 20])
        h.end_input()
    assert sink.results == [1, 2]
    assert sink.timestamps == [10, 20]
