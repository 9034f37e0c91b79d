"""A sink that buffers elements and keeps the buffer in checkpointed state (seed §3.4).

``BufferingSink`` collects elements and writes them out ``threshold`` at a time (here: prints
them; in real life, one bulk request to an external system). Elements still in the buffer would
be lost if the job failed, so the sink is also a ``CheckpointedFunction``: ``snapshot_state``
copies the unflushed buffer into operator list state, and ``initialize_state`` puts restored
elements back into the buffer, where the next flush writes them. ``finish`` flushes the rest
when a bounded input ends.

Run: ``python examples/buffering_sink.py [PARALLELISM]`` or
``strom run examples/buffering_sink.py --parallelism 2``.
"""

from __future__ import annotations

import sys

from strom import StreamExecutionEnvironment
from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    RuntimeContext,
    SinkContext,
    SinkFunction,
)
from strom.state import ListState, ListStateDescriptor


class BufferingSink(SinkFunction[str], CheckpointedFunction):
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.buffered: list[str] = []
        self.state: ListState[str] | None = None
        self.subtask = 0

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self.state = ctx.get_operator_state_store().get_list_state(
            ListStateDescriptor[str]("buffered-elements")
        )
        if ctx.is_restored():
            # elements that were buffered, not yet written, when the checkpoint was taken
            self.buffered.extend(self.state.get())

    def open(self, runtime_context: RuntimeContext) -> None:
        self.subtask = runtime_context.get_index_of_this_subtask()

    def invoke(self, value: str, context: SinkContext) -> None:
        self.buffered.append(value)
        if len(self.buffered) >= self.threshold:
            self.flush()

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        assert self.state is not None
        self.state.update(self.buffered)  # replaces what the previous checkpoint stored

    def finish(self) -> None:
        if self.buffered:
            self.flush()

    def flush(self) -> None:
        # one write per line: subtasks print from their own threads
        sys.stdout.write(f"subtask {self.subtask} flushed {len(self.buffered)}: {self.buffered}\n")
        self.buffered = []


FRUIT = ["apple", "banana", "cherry", "damson", "elderberry", "fig", "grape", "huckleberry"]


def main(parallelism: int | None = None, threshold: int = 3) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    if parallelism is not None:
        env.set_parallelism(parallelism)
    env.from_collection(FRUIT).map(str.upper).add_sink(BufferingSink(threshold))
    env.execute("buffering sink")


if __name__ == "__main__":
    main(parallelism=int(sys.argv[1]) if len(sys.argv) > 1 else None)
