"""``StridedSource``: a parallel ``SourceFunction`` whose position is operator list state
(seed §3.2), for tests of checkpoints and recovery through whole jobs.

Shared by the e2e job ``keyed_count.py`` (run by ``tests/e2e/test_chaos.py``) and by
``tests/integration/checkpoint/test_recovery.py``. It lives next to the job because
``strom run`` puts a job's directory on ``sys.path``; the recovery test adds it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    RichParallelSourceFunction,
    RuntimeContext,
    SourceContext,
)
from strom.state import ListStateDescriptor

__all__ = ["StridedSource"]

T = TypeVar("T")


class StridedSource(RichParallelSourceFunction[T], CheckpointedFunction):
    """Emits ``items``: subtask *i* of *n* the items at *i*, *i + n*, *i + 2n*, ...

    Each subtask keeps the index of its next item in operator list state and emits under the
    checkpoint lock, so a job restored at the same parallelism resumes exactly where its
    checkpoint was. The position is per subtask: it does not survive a rescale.
    """

    def __init__(self, items: Sequence[T]) -> None:
        self.items = tuple(items)
        self.running = True
        self.position: int | None = None

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self.state = ctx.get_operator_state_store().get_list_state(
            ListStateDescriptor[int | None]("position")
        )
        restored = self.state.get()
        self.position = restored[0] if restored else None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.step = runtime_context.get_number_of_parallel_subtasks()
        if self.position is None:
            self.position = runtime_context.get_index_of_this_subtask()

    def run(self, ctx: SourceContext[T]) -> None:
        assert self.position is not None
        items = self.items
        while self.running and self.position < len(items):
            with ctx.get_checkpoint_lock():
                ctx.collect(items[self.position])
                self.position += self.step

    def cancel(self) -> None:
        self.running = False

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        self.state.update([self.position])
