"""The collection source. Exactly-once with checkpoints: its position (the index of the next
element) is its state, so a restore resumes right after the last element a checkpoint saw.

With parallelism > 1 subtask *i* reads elements *i*, *i + n*, *i + 2n*, ... (strided split);
Flink's ``from_collection`` is non-parallel, and so is ours by default (``parallel=False``).
"""

from __future__ import annotations

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
        self._elements = elements if parallelism == 1 else elements[subtask::parallelism]
        self._subtask = subtask
        self._parallelism = parallelism
        self._next = 0  # index into this subtask's strided share

    def open(self, restored_state: list[Any] | None) -> None:
        for entry in restored_state or []:
            # entries are (subtask, parallelism, position) of the subtask that wrote them
            subtask, parallelism, position = entry
            if (subtask, parallelism) == (self._subtask, self._parallelism):
                self._next = position
            elif parallelism != self._parallelism:
                raise ValueError(
                    "the collection source cannot restore at another parallelism "
                    f"(snapshot from {parallelism}, now {self._parallelism})"
                )

    def poll(self, max_records: int) -> list[T] | None:
        elements = self._elements
        start = self._next
        if start >= len(elements):
            return None
        end = min(start + max_records, len(elements))
        self._next = end
        return list(elements[start:end]) if not isinstance(elements, list) else elements[start:end]

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [(self._subtask, self._parallelism, self._next)]
