"""The window operator's fast path for aligned event-time windows with the default trigger:
tumbling windows, and sliding windows whose slide divides the size.

Contents are panes of one slide, ``{key: {pane start: acc}}``; a window is the merge of its
size/slide panes, so per-record work does not grow with size/slide:
* a batch whose records all fall in one pane that has not fired (or, in time order, in a few)
  costs one dict lookup and one ``add``/``reduce`` call per record, with per-key work once per
  batch; anything else (late records, disorder across a pane boundary) goes record by record;
* a firing sliding window takes its aggregate from the key's ``PaneStack`` (a few merges)
  rather than merging all its panes;
* window timers are chained: a new pane registers the first window holding it, and firing a
  window registers the next one while it still has panes — one timer per firing.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from strom.runtime.operators.base import failed_record
from strom.runtime.operators.windows.contents import MISSING, FoldError
from strom.runtime.operators.windows.general import WindowOperator
from strom.runtime.operators.windows.stack import PaneStack
from strom.windowing import SlidingEventTimeWindows, TimeWindow, TumblingEventTimeWindows


class PaneWindowOperator(WindowOperator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assigner = self.assigner
        # (slide, size, offset); tumbling windows are the case slide == size
        self.panes: tuple[int, int, int]
        if isinstance(assigner, SlidingEventTimeWindows):
            self.panes = (assigner.slide, assigner.size, assigner.offset)
        elif isinstance(assigner, TumblingEventTimeWindows):
            self.panes = (assigner.size, assigner.size, assigner.offset)
        else:
            raise TypeError(f"no panes for {assigner!r}")

    def open(self) -> None:
        super().open()
        self._stacks: dict[Any, PaneStack] = {}  # sliding windows only; derived, not state

    def _fire_window(self, ts: int, k: Any, w: Any, event_time: bool) -> None:
        self._fire_pane_window(k, w)

    def _clear(self, k: Any, w: Any) -> None:
        self._drop_window(k, w)  # (no trigger state on this path)

    def _add(self, values: list[Any], stamps: list[int], keys: list[Any]) -> None:
        """Fold a batch into panes ``{key: {pane start: acc}}``.

        The common case — every record of the batch in one pane that has not fired yet (or in
        a few such panes, in time order) — goes through ``_add_to_pane``: one dict lookup and
        one call of the aggregate per record. Anything else (late records, disorder across a
        pane boundary) takes the per-record loop of ``_add_mixed``.
        """
        slide, _, offset = self.panes
        fired = self.watermark - slide + 1  # panes at or below have had a window fire
        # sorting is a single C-level pass on ordered input (cheaper than min() plus max())
        ordered = sorted(stamps)
        lo, hi = ordered[0], ordered[-1]
        first = lo - (lo - offset) % slide
        if first > fired:
            if hi < first + slide:
                self._add_to_pane(first, values, keys)
                return
            if stamps == ordered:  # in time order: one run per pane
                start, n = 0, len(stamps)
                while start < n:
                    ts = stamps[start]
                    pane = ts - (ts - offset) % slide
                    end = bisect_left(stamps, pane + slide, start)
                    self._add_to_pane(pane, values[start:end], keys[start:end])
                    start = end
                return
        self._add_mixed(values, stamps, keys)

    def _add_to_pane(self, pane: int, values: list[Any], keys: list[Any]) -> None:
        """All of ``values`` belong to ``pane``, which no window has fired yet."""
        table, kind, contents = self.table, self.kind, self.contents
        missing = MISSING
        per_keys = {k: table.get(k) or {} for k in dict.fromkeys(keys)}
        accs = {k: per_key.get(pane, missing) for k, per_key in per_keys.items()}
        new_keys = [k for k, acc in accs.items() if acc is missing]
        if kind == "aggregate":
            create = contents.create
            for k in new_keys:
                accs[k] = create()
        elif kind == "process":
            for k in new_keys:
                accs[k] = []
        it = iter(values)
        try:
            if kind == "aggregate":
                add = contents.add
                for v, k in zip(it, keys, strict=True):
                    accs[k] = add(v, accs[k])
            elif kind == "reduce":
                merge = contents.merge
                for v, k in zip(it, keys, strict=True):
                    acc = accs[k]
                    accs[k] = v if acc is missing else merge(acc, v)
            else:
                for v, k in zip(it, keys, strict=True):
                    accs[k].append(v)
        except Exception as e:
            raise self.fail(e, failed_record(values, it)) from e
        for k, acc in accs.items():
            per_keys[k][pane] = acc
        table.update(per_keys)  # an on-disk backend sees only assignments
        self._register_new_panes([(k, pane) for k in new_keys])

    def _add_mixed(self, values: list[Any], stamps: list[int], keys: list[Any]) -> None:
        """Fold records pane by pane, whatever their order: those too late for every window
        of their pane are dropped (or go to the side output); those late but within the
        allowed lateness re-fire their fired windows now."""
        slide, size, offset = self.panes
        wm, lateness = self.watermark, self.allowed_lateness
        # pane p is too late when even its last window (p + size - 1) is past lateness, and
        # late-but-kept when its first window (p + slide - 1) already fired
        too_late = wm - size + 1 - lateness
        fired = wm - slide + 1
        items: list[tuple[Any, int, Any]] = []
        for v, ts, k in zip(values, stamps, keys, strict=True):
            p = ts - (ts - offset) % slide
            if p <= too_late:
                self._drop_late(v, ts)
            else:
                items.append((k, p, v))
        try:
            new_panes = self.contents.add_batch(self.table, items)
        except FoldError as e:
            raise self.fail(e.cause, e.value) from e.cause
        late = [(k, p) for k, p, _ in items if p <= fired]
        for k, _ in late:
            self._stacks.pop(k, None)  # a pane it holds changed
        self._register_new_panes(new_panes)
        backend = self.backend
        for k, p in dict.fromkeys(late):  # late but within lateness: updated results now
            backend.current_key = k
            per_key = self.table.get(k)
            for start in range(p, p - size, -slide):
                end = start + size - 1  # the window's max timestamp
                if end <= wm < end + lateness:  # fired, and not yet cleaned up
                    w = TimeWindow(start, start + size)
                    self._emit(k, w, self._combine_panes(per_key, w))

    def _register_new_panes(self, new_panes: list[tuple[Any, int]]) -> None:
        """A new pane registers one timer: the first window holding it that has not fired.
        Firing a window registers the next one while it still has panes (see
        ``_fire_pane_window``), so timers grow with firings, not with size/slide."""
        slide, size, _ = self.panes
        wm = self.watermark
        timers: list[tuple[int, Any, TimeWindow]] = []
        for k, p in new_panes:
            first = p + slide - 1
            if first <= wm:
                first += ((wm - first) // slide + 1) * slide
            if first <= p + size - 1:
                timers.append((first, k, TimeWindow(first + 1 - size, first + 1)))
        self.timers.register_event_time_timers(timers)

    def _combine_panes(self, per_key: dict[int, Any] | None, w: TimeWindow) -> Any:
        """Merge the panes of ``w`` from scratch (late firings; the first firing of a key)."""
        slide = self.panes[0]
        if not per_key:
            return MISSING
        if slide == w.end - w.start:
            acc = per_key.get(w.start, MISSING)
            return list(acc) if acc is not MISSING and self.kind == "process" else acc
        merge, copy = self.contents.merge, self.contents.copy
        acc = MISSING
        for p in range(w.start, w.end, slide):
            pane_acc = per_key.get(p, MISSING)
            if pane_acc is not MISSING:
                acc = copy(pane_acc) if acc is MISSING else merge(acc, pane_acc)
        return acc

    def _slide(self, k: Any, w: TimeWindow, per_key: dict[int, Any]) -> Any:
        """``w``'s aggregate through the key's ``PaneStack`` (a few merges per firing)."""
        slide = self.panes[0]
        stack = self._stacks.get(k)
        if stack is None or not w.start <= stack.next_pane <= w.end:
            contents = self.contents
            stack = self._stacks[k] = PaneStack(w.start, contents.merge, contents.copy)
        stack.evict_before(w.start)
        for p in range(stack.next_pane, w.end, slide):
            acc = per_key.get(p, MISSING)
            if acc is not MISSING:
                stack.push(p, acc)
        stack.next_pane = w.end
        return stack.result()

    def _fire_pane_window(self, k: Any, w: TimeWindow) -> None:
        """Emit ``w``; chain the timer of the next window if it still holds panes; drop the
        pane that no later window holds (after the allowed lateness)."""
        slide, size, _ = self.panes
        per_key = self.table.get(k) or {}
        if size == slide or self.kind == "process":  # (element lists: nothing to share)
            self._emit(k, w, self._combine_panes(per_key, w))
        else:
            self._emit(k, w, self._slide(k, w, per_key))
        if size > slide and any(p in per_key for p in range(w.start + slide, w.end, slide)):
            nxt = TimeWindow(w.start + slide, w.end + slide)
            self.timers.register_event_time_timer(nxt.max_timestamp(), nxt)
        else:
            self._stacks.pop(k, None)  # the key's last window: nothing left to slide over
        if self.allowed_lateness:
            self.timers.register_event_time_timer(
                w.max_timestamp() + self.allowed_lateness, ("gc", w.start)
            )
        else:
            self._drop_window(k, w.start)
