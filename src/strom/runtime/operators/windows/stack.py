"""Sliding windows over panes without re-merging every pane at every firing.

A window of size ``n * slide`` is the merge of its ``n`` panes. Merging them all at each firing
costs ``n`` merges per window (60 for a 60-minute window sliding by 1 minute). ``PaneStack``
keeps the classic *two-stacks* sliding aggregation per key instead: panes enter at the back
(one merge into the back's running aggregate) and leave from the front, whose entries carry
the aggregate of themselves and every newer front pane; when the front runs empty the back is
flipped onto it (two merges per pane, once). A firing then costs a few merges whatever ``n``.

The stack is a cache derived from the panes in keyed state, never checkpointed: it is rebuilt
from state after a restore, and the window operator drops it when a pane it holds changes (a
late record within the allowed lateness).

Accumulators in state are never handed to ``merge`` as the first argument, which a merge
function may modify and return: ``copy`` (``merge(create_accumulator(), acc)`` for an
``AggregateFunction``) makes the stack's own copy first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MISSING: Any = object()


class PaneStack:
    """Two-stacks aggregation of one key's panes in pane order (oldest first)."""

    __slots__ = ("_copy", "_merge", "back", "back_agg", "front", "next_pane")

    def __init__(
        self, next_pane: int, merge: Callable[[Any, Any], Any], copy: Callable[[Any], Any]
    ) -> None:
        # front: (pane start, aggregate of this pane and every newer front pane); oldest last
        self.front: list[tuple[int, Any]] = []
        # back: (pane start, pane accumulator), oldest first; back_agg is the stack's own copy
        self.back: list[tuple[int, Any]] = []
        self.back_agg: Any = MISSING
        self.next_pane = next_pane
        """Panes before this start have been offered (``push``) already."""
        self._merge = merge
        self._copy = copy

    def push(self, pane: int, acc: Any) -> None:
        self.back.append((pane, acc))
        if self.back_agg is MISSING:
            self.back_agg = self._copy(acc)
        else:
            self.back_agg = self._merge(self.back_agg, acc)

    def evict_before(self, start: int) -> None:
        """Drop every pane that starts before ``start``."""
        front = self.front
        while True:
            if not front:
                if not self.back or self.back[0][0] >= start:
                    return
                self._flip()
            if front[-1][0] >= start:
                return
            front.pop()

    def _flip(self) -> None:
        merge, copy = self._merge, self._copy
        agg: Any = MISSING
        for pane, acc in reversed(self.back):
            agg = copy(acc) if agg is MISSING else merge(copy(acc), agg)
            self.front.append((pane, agg))
        self.back.clear()
        self.back_agg = MISSING

    def result(self) -> Any:
        """The aggregate of every pane held (``MISSING`` when none): a fresh value, so what
        is emitted never shares an accumulator the stack goes on merging into."""
        if not self.front:
            return MISSING if self.back_agg is MISSING else self._copy(self.back_agg)
        front_agg = self._copy(self.front[-1][1])
        if self.back_agg is MISSING:
            return front_agg
        return self._merge(front_agg, self.back_agg)
