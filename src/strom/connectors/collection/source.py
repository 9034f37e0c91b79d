"""The collection source. Exactly-once with checkpoints: what is left to emit is its state, so
a restore resumes right after the last element a checkpoint saw.

With parallelism > 1 subtask *i* reads elements *i*, *i + n*, *i + 2n*, ... (strided split);
Flink's ``from_collection`` is non-parallel, and so is ours by default (``parallel=False``).

State is the indices each subtask has still to emit, as ``range``s (one per subtask unless the
job was restored), in union list state. A restore at any parallelism merges what every
subtask had left and deals it out again (subtask *j* of *n* takes every *n*-th remaining index
from the *j*-th), so each element is emitted exactly once overall, and each subtask still
emits in index order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import (
    DeliveryGuarantee,
    ReaderContext,
    Source,
    SourceReader,
)

T = TypeVar("T")


class CollectionSource(Source[T], Generic[T]):
    """Emits the given elements once, in order. Guarantee: exactly-once.

    Args:
        elements: a sequence (or any iterable, which is materialised once).
        parallel: split the elements among subtasks; otherwise the source has parallelism 1.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.EXACTLY_ONCE}
    )
    bounded = True

    def __init__(self, elements: Iterable[T], *, parallel: bool = False) -> None:
        self.elements: Sequence[T] = (
            elements if isinstance(elements, list | tuple | range) else list(elements)
        )
        self.max_parallelism = None if parallel else 1

    def create_reader(self, ctx: ReaderContext) -> SourceReader[T]:
        return _CollectionReader(self.elements, ctx.subtask_index, ctx.parallelism)

    def describe(self) -> str:
        return f"Collection Source ({len(self.elements)} elements)"


class _CollectionReader(SourceReader[T]):
    def __init__(self, elements: Sequence[T], subtask: int, parallelism: int) -> None:
        self._elements = elements
        self._subtask = subtask
        self._parallelism = parallelism
        self._todo: list[range] = [range(subtask, len(elements), parallelism)]
        """Indices still to emit, in emission order."""

    def open(self, restored_state: list[Any] | None) -> None:
        if restored_state is None:
            return
        left = [_remaining(e, len(self._elements)) for e in restored_state]
        every = list(heapq.merge(*left))  # ascending: each subtask keeps emitting in order
        self._todo = _as_ranges(every[self._subtask :: self._parallelism])

    def poll(self, max_records: int) -> list[T] | None:
        todo, elements = self._todo, self._elements
        while todo and not todo[0]:
            todo.pop(0)
        if not todo:
            return None
        head = todo[0]
        take, todo[0] = head[:max_records], head[max_records:]
        batch = elements[take.start : take.stop : take.step] if take.step > 0 else ()
        return batch if isinstance(batch, list) else list(batch)

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [("range", r.start, r.stop, r.step) for r in self._todo if r]


def _remaining(entry: Any, size: int) -> range:
    """A snapshot entry as the range of indices it has still to emit. Entries written before
    the state was ranges are ``(subtask, parallelism, position in the strided share)``."""
    if entry[0] == "range":
        _, start, stop, step = entry
        return range(start, stop, step)
    subtask, parallelism, position = entry
    return range(subtask + position * parallelism, size, parallelism)


def _as_ranges(indices: list[int]) -> list[range]:
    """Ascending indices as the fewest runs of a constant step, greedily."""
    out: list[range] = []
    i, n = 0, len(indices)
    while i < n:
        j = i + 1
        if j < n:
            step = indices[j] - indices[i]
            while j + 1 < n and indices[j + 1] - indices[j] == step:
                j += 1
            out.append(range(indices[i], indices[j] + 1, step))
            i = j + 1
        else:
            out.append(range(indices[i], indices[i] + 1))
            i = j
    return out
