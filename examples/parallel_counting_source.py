"""A parallel source that checkpoints its position (seed §3.2).

``CountingSource`` counts ``0 .. limit-1`` as several parallel instances: subtask ``k`` of
``p`` emits ``k, k + p, k + 2p, ...``, so the instances split the range between them without
talking to each other. Its position (the next number and the stride) is its operator list
state: ``snapshot_state`` copies it in, ``initialize_state`` takes it back after a failure.
Emitting a number and advancing the position happen together under the checkpoint lock, so a
checkpoint never records a number as emitted without its position having moved past it (which
would duplicate it on restore), nor the reverse (which would lose it). ``cancel`` makes ``run``
return.

A sink adds up what arrives in accumulators; the job prints how many numbers each subtask
emitted and the total, which is the same at every parallelism.

Run: ``python examples/parallel_counting_source.py [PARALLELISM]`` or
``strom run examples/parallel_counting_source.py --parallelism 4``.
"""

from __future__ import annotations

import sys
from typing import Any

from strom import StreamExecutionEnvironment
from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    IntCounter,
    RichParallelSourceFunction,
    RichSinkFunction,
    RuntimeContext,
    SinkContext,
    SourceContext,
)
from strom.state import ListState, ListStateDescriptor


class CountingSource(RichParallelSourceFunction[int], CheckpointedFunction):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = True
        self.next: int | None = None  # None until restored or opened
        self.step = 1
        self.position: ListState[tuple[int, int]] | None = None

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        # runs before open(), on a fresh start and on restore alike
        descriptor = ListStateDescriptor[tuple[int, int]]("position")
        self.position = ctx.get_operator_state_store().get_list_state(descriptor)
        if ctx.is_restored():
            restored = self.position.get()
            if len(restored) != 1:
                # round-robin redistribution gave this subtask 0 or 2+ positions: that only
                # happens at another parallelism, which this simple source does not support
                # (strom.apps.accesslog.AccessLogSource shows one that does)
                raise RuntimeError("restore CountingSource at its checkpointed parallelism")
            self.next, self.step = restored[0]

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        subtask = runtime_context.get_index_of_this_subtask()
        if self.next is None:  # fresh start: this subtask's share of the range
            self.next = subtask
            self.step = runtime_context.get_number_of_parallel_subtasks()
        self.emitted = IntCounter()
        runtime_context.add_accumulator(f"emitted by subtask {subtask}", self.emitted)

    def run(self, ctx: SourceContext[int]) -> None:
        assert self.next is not None, "open() sets the position"
        lock = ctx.get_checkpoint_lock()
        while self.running and self.next < self.limit:
            with lock:  # emit and advance atomically with respect to checkpoints
                ctx.collect(self.next)
                self.next += self.step
                self.emitted.add(1)

    def cancel(self) -> None:
        self.running = False

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        assert self.position is not None
        assert self.next is not None
        self.position.update([(self.next, self.step)])


class SumSink(RichSinkFunction[int]):
    """Adds every number to job-wide accumulators (merged over subtasks by the runtime)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.count, self.total = IntCounter(), IntCounter()
        runtime_context.add_accumulator("count", self.count)
        runtime_context.add_accumulator("total", self.total)

    def invoke(self, value: int, context: SinkContext) -> None:
        self.count.add(1)
        self.total.add(value)


def main(limit: int = 1000, parallelism: int | None = None) -> dict[str, Any]:
    env = StreamExecutionEnvironment.get_execution_environment()
    if parallelism is not None:
        env.set_parallelism(parallelism)
    env.add_source(CountingSource(limit), "Counting Source").add_sink(SumSink())
    result = env.execute("parallel counting source")
    for k in range(env.get_parallelism()):
        emitted = result.get_accumulator_result(f"emitted by subtask {k}")
        print(f"subtask {k} emitted {emitted} numbers")
    count, total = result.get_accumulator_result("count"), result.get_accumulator_result("total")
    print(
        f"total of 0..{limit - 1} = {total} ({count} numbers, parallelism {env.get_parallelism()})"
    )
    return result.accumulators


if __name__ == "__main__":
    main(parallelism=int(sys.argv[1]) if len(sys.argv) > 1 else None)
