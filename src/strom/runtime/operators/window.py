"""The window operator (keyed): assign records to windows, keep one accumulator per key and
window in keyed state, fire through the trigger, clean up after the allowed lateness.

Contents are ``{key: {window: acc}}`` in the keyed backend (so they checkpoint and rescale with
their keys); ``acc`` is the reduced value, the ``AggregateFunction`` accumulator, or the list of
elements for a ``ProcessWindowFunction``. Timers carry the window as namespace.

Fast paths keep per-record work small:
* default event-time trigger, no merging: the trigger is consulted only when a window is new
  for a key (to register its end timer) or the record is late;
* tumbling windows, and sliding windows whose slide divides the size, are kept as panes of
  one slide (``{key: {pane start: acc}}``): a record updates one pane in a tight loop, and a
  firing window combines its size/slide panes — per-record work does not grow with
  size/slide (a 60-minute window sliding by 1 minute costs what a 1-minute tumbling window
  costs, plus the merges at firing). Window timers are chained: one per firing.
Everything else (custom triggers, processing time, sessions, global windows) takes the general
path through the trigger.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, MutableMapping
from typing import Any

from strom.functions import AggregateFunction, ReduceFunction
from strom.functions.core import close_function, open_function
from strom.runtime.elements import MAX_WATERMARK
from strom.runtime.keygroups import key_group_range
from strom.runtime.operators.base import StreamOperator, failed_record
from strom.runtime.operators.keyed import key_function
from strom.runtime.operators.panes import PaneStack
from strom.runtime.timers import TimerService
from strom.state import ValueStateDescriptor
from strom.windowing import (
    EventTimeTrigger,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    TumblingEventTimeWindows,
    WindowAssigner,
)
from strom.windowing.windows import Window

_MISSING = object()
CONTENTS: ValueStateDescriptor[Any] = ValueStateDescriptor("_window_contents")
TRIGGER_STATE: ValueStateDescriptor[Any] = ValueStateDescriptor("_window_trigger")


class _Contents:
    """How accumulators are built and combined for reduce / aggregate / process."""

    def __init__(self, kind: str, fn: Any) -> None:
        self.kind = kind
        # ``copy`` gives an accumulator of our own, for merges that may modify their first
        # argument: state must not change under a merge
        self.copy: Callable[[Any], Any]
        if kind == "reduce":
            r = fn.reduce if isinstance(fn, ReduceFunction) else fn
            self.merge: Callable[[Any, Any], Any] = r
            self.result: Callable[[Any], Any] = lambda acc: acc
            self.copy = lambda acc: acc  # reduce functions return new values
        elif kind == "aggregate":
            agg: AggregateFunction[Any, Any, Any] = fn
            self.create = agg.create_accumulator
            self.add = agg.add
            self.merge = agg.merge
            self.result = agg.get_result
            create, merge = agg.create_accumulator, agg.merge
            self.copy = lambda acc: merge(create(), acc)
        else:
            self.merge = lambda a, b: a + b
            self.result = lambda acc: acc
            self.copy = list

    def add_batch(
        self, table: MutableMapping[Any, Any], items: list[tuple[Any, Any, Any]]
    ) -> list[tuple[Any, Any]]:
        """Fold ``(key, window, value)`` into ``table``; returns (key, window) pairs new.

        Each touched key's map is written back once per batch: an on-disk backend only sees
        what is assigned, not in-place changes.
        """
        new: list[tuple[Any, Any]] = []
        kind = self.kind
        touched: dict[Any, dict[Any, Any]] = {}
        for k, w, v in items:
            per_key = touched.get(k)
            if per_key is None:
                per_key = table.get(k)
                if per_key is None:
                    per_key = {}
                touched[k] = per_key
            acc = per_key.get(w, _MISSING)
            if acc is _MISSING:
                new.append((k, w))
                if kind == "reduce":
                    per_key[w] = v
                elif kind == "aggregate":
                    per_key[w] = self.add(v, self.create())
                else:
                    per_key[w] = [v]
            elif kind == "reduce":
                per_key[w] = self.merge(acc, v)
            elif kind == "aggregate":
                per_key[w] = self.add(v, acc)
            else:
                acc.append(v)
        for k, per_key in touched.items():
            table[k] = per_key
        return new


class _TriggerCtx(TriggerContext):
    def __init__(self, op: WindowOperator) -> None:
        self.op = op
        self.window: Window = TimeWindow(0, 0)

    def current_watermark(self) -> int:
        return self.op.watermark

    def current_processing_time(self) -> int:
        return self.op.ctx.processing_time()

    def register_event_time_timer(self, time: int) -> None:
        self.op.timers.register_event_time_timer(time, self.window)

    def register_processing_time_timer(self, time: int) -> None:
        self.op.timers.register_processing_time_timer(time, self.window)

    def delete_event_time_timer(self, time: int) -> None:
        self.op.timers.delete_event_time_timer(time, self.window)

    def delete_processing_time_timer(self, time: int) -> None:
        self.op.timers.delete_processing_time_timer(time, self.window)

    def get_state(self, name: str, default: Any = None) -> Any:
        per_key = self.op.trigger_table.get(self.op.backend.current_key)
        if per_key is None:
            return default
        return per_key.get((self.window, name), default)

    def set_state(self, name: str, value: Any) -> None:
        key = self.op.backend.current_key
        table = self.op.trigger_table
        per_key = table.get(key) or {}
        if value is None:
            per_key.pop((self.window, name), None)
        else:
            per_key[(self.window, name)] = value
        if per_key:
            table[key] = per_key
        elif key in table:
            del table[key]


class _WindowCtx(ProcessWindowFunction.Context):
    def __init__(self, op: WindowOperator) -> None:
        self.op = op
        self.current: Window = TimeWindow(0, 0)

    def window(self) -> Window:
        return self.current

    def current_processing_time(self) -> int:
        return self.op.ctx.processing_time()

    def current_watermark(self) -> int:
        return self.op.watermark


class WindowOperator(StreamOperator):
    uses_ticks = True

    def __init__(
        self,
        name: str,
        key_selector: Any,
        assigner: WindowAssigner,
        kind: str,
        function: Any,
        *,
        trigger: Trigger | None = None,
        window_function: ProcessWindowFunction[Any, Any, Any] | None = None,
        allowed_lateness: int = 0,
        late_tag: str | None = None,
    ) -> None:
        super().__init__(name, function)
        self.key_selector = key_selector
        self.assigner = assigner
        self.kind = kind
        self.trigger = trigger or assigner.default_trigger()
        self.window_function = window_function
        self.allowed_lateness = allowed_lateness if assigner.is_event_time else 0
        self.late_tag = late_tag
        default_trigger = trigger is None or type(trigger) is EventTimeTrigger
        fast = assigner.is_event_time and not assigner.is_merging and default_trigger
        # (slide, size, offset) of aligned windows built from panes of one slide: tumbling
        # windows are the case slide == size
        self.panes: tuple[int, int, int] | None = None
        if fast and isinstance(assigner, SlidingEventTimeWindows) and assigner.pane_size:
            self.panes = (assigner.slide, assigner.size, assigner.offset)
        elif fast and isinstance(assigner, TumblingEventTimeWindows):
            self.panes = (assigner.size, assigner.size, assigner.offset)

    # -- lifecycle ------------------------------------------------------------------------
    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        super().initialize_state(snapshots)
        backend = self.ctx.keyed_backend
        assert backend is not None, "window operator without keyed state backend"
        self.backend = backend
        self.timers = TimerService(backend)
        if snapshots is not None:
            owned = key_group_range(
                self.ctx.subtask_index, self.ctx.max_parallelism, self.ctx.parallelism
            )
            self.timers.restore([s["timers"] for s in snapshots if "timers" in s], owned)

    def open(self) -> None:
        if self.kind != "reduce" and self.function is not None:
            open_function(self.function, self.runtime_context)
        if self.window_function is not None:
            open_function(self.window_function, self.runtime_context)
        self.key = key_function(self.key_selector)
        self.contents = _Contents(self.kind, self.function)
        self.table = self.backend.table(CONTENTS)
        self.trigger_table = self.backend.table(TRIGGER_STATE)
        self.tctx = _TriggerCtx(self)
        self.wctx = _WindowCtx(self)
        self.late_dropped = self.ctx.metrics.counter("num_late_records_dropped")
        self._out_values: list[Any] = []
        self._out_stamps: list[int] = []
        self._stacks: dict[Any, PaneStack] = {}  # sliding windows only; derived, not state

    def close(self) -> None:
        if self.kind != "reduce" and self.function is not None:
            close_function(self.function)
        if self.window_function is not None:
            close_function(self.window_function)

    def snapshot_state(self, checkpoint_id: int, timestamp: int) -> dict[str, Any]:
        snap = super().snapshot_state(checkpoint_id, timestamp)
        snap["timers"] = self.timers.snapshot()
        return snap

    # -- records --------------------------------------------------------------------------
    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not values:
            return
        if self.assigner.is_event_time:
            if timestamps is None:
                raise self.fail(
                    ValueError(
                        "event-time windows need record timestamps: set a watermark strategy "
                        "on the source or call assign_timestamps_and_watermarks"
                    ),
                    values[0],
                )
            stamps = timestamps
        else:
            now = self.ctx.processing_time()
            stamps = [now] * len(values)
        it = iter(values)
        try:
            keys = list(map(self.key, it))  # the key selector runs in a C-level loop
        except Exception as e:
            raise self.fail(e, failed_record(values, it)) from e
        if self.panes is not None:
            self._add_panes(values, stamps, keys)
        else:
            v: Any = ...
            try:
                for v, ts, k in zip(values, stamps, keys, strict=True):
                    self._add_general(v, ts, k)
            except Exception as e:
                raise self.fail(e, v) from e
        self._flush()  # late firings and triggers that fire on elements

    def _late(self, window: Window) -> bool:
        return window.max_timestamp() + self.allowed_lateness <= self.watermark

    def _drop_late(self, value: Any, ts: int) -> None:
        if self.late_tag is not None:
            self.side_output(self.late_tag).emit([value], [ts])
        else:
            self.late_dropped.count += 1

    def _add_panes(self, values: list[Any], stamps: list[int], keys: list[Any]) -> None:
        """Fold a batch into panes ``{key: {pane start: acc}}``.

        The common case — every record of the batch in one pane that has not fired yet (or in
        a few such panes, in time order) — goes through ``_add_to_pane``: one dict lookup and
        one call of the aggregate per record. Anything else (late records, disorder across a
        pane boundary) takes the per-record loop of ``_add_mixed``.
        """
        assert self.panes is not None
        slide, _, offset = self.panes
        fired = self.watermark - slide + 1  # panes at or below have had a window fire
        lo, hi = min(stamps), max(stamps)
        first = lo - (lo - offset) % slide
        if first > fired:
            if hi < first + slide:
                self._add_to_pane(first, values, keys)
                return
            if stamps == sorted(stamps):  # in time order: one run per pane
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
        missing = _MISSING
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
        """Fold records one by one: late ones dropped (or to the side output), late ones
        within the allowed lateness re-fire their windows now."""
        assert self.panes is not None
        slide, size, offset = self.panes
        wm, lateness = self.watermark, self.allowed_lateness
        table, kind, contents = self.table, self.kind, self.contents
        touched: dict[Any, dict[int, Any]] = {}
        new_panes: list[tuple[Any, int]] = []
        late: list[tuple[Any, int]] = []
        # pane p is too late when even its last window (p + size - 1) is past lateness, and
        # late-but-kept when its first window (p + slide - 1) already fired
        too_late = wm - size + 1 - lateness
        fired = wm - slide + 1
        missing = _MISSING
        v: Any = ...
        try:
            for v, ts, k in zip(values, stamps, keys, strict=True):
                p = ts - (ts - offset) % slide
                if p <= too_late:
                    self._drop_late(v, ts)
                    continue
                per_key = touched.get(k)
                if per_key is None:
                    per_key = table.get(k)
                    if per_key is None:
                        per_key = {}
                    touched[k] = per_key
                acc = per_key.get(p, missing)
                if acc is missing:
                    new_panes.append((k, p))
                    if kind == "aggregate":
                        per_key[p] = contents.add(v, contents.create())
                    elif kind == "reduce":
                        per_key[p] = v
                    else:
                        per_key[p] = [v]
                elif kind == "aggregate":
                    per_key[p] = contents.add(v, acc)
                elif kind == "reduce":
                    per_key[p] = contents.merge(acc, v)
                else:
                    acc.append(v)
                if p <= fired:
                    late.append((k, p))
                    self._stacks.pop(k, None)  # a pane it holds changed
        except Exception as e:
            raise self.fail(e, v) from e
        for k, per_key in touched.items():
            table[k] = per_key  # an on-disk backend sees only assignments
        self._register_new_panes(new_panes)
        backend = self.backend
        for k, p in dict.fromkeys(late):  # late but within lateness: updated results now
            backend.current_key = k
            per_key = table.get(k)
            for s in range(p, p - size, -slide):
                end = s + size - 1  # the window's max timestamp
                if end <= wm < end + lateness:  # fired, and not yet cleaned up
                    self._emit(
                        k,
                        TimeWindow(s, s + size),
                        self._combine_panes(per_key, TimeWindow(s, s + size)),
                    )

    def _register_new_panes(self, new_panes: list[tuple[Any, int]]) -> None:
        """A new pane registers one timer: the first window holding it that has not fired.
        Firing a window registers the next one while it still has panes (see
        ``_fire_pane_window``), so timers grow with firings, not with size/slide."""
        assert self.panes is not None
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
        assert self.panes is not None
        slide = self.panes[0]
        if not per_key:
            return _MISSING
        if slide == w.end - w.start:
            acc = per_key.get(w.start, _MISSING)
            return list(acc) if acc is not _MISSING and self.kind == "process" else acc
        merge, copy = self.contents.merge, self.contents.copy
        acc = _MISSING
        for p in range(w.start, w.end, slide):
            pane_acc = per_key.get(p, _MISSING)
            if pane_acc is not _MISSING:
                acc = copy(pane_acc) if acc is _MISSING else merge(acc, pane_acc)
        return acc

    def _slide(self, k: Any, w: TimeWindow, per_key: dict[int, Any]) -> Any:
        """``w``'s aggregate through the key's ``PaneStack`` (a few merges per firing)."""
        assert self.panes is not None
        slide = self.panes[0]
        stack = self._stacks.get(k)
        if stack is None or not w.start <= stack.next_pane <= w.end:
            contents = self.contents
            stack = self._stacks[k] = PaneStack(w.start, contents.merge, contents.copy)
        stack.evict_before(w.start)
        for p in range(stack.next_pane, w.end, slide):
            acc = per_key.get(p, _MISSING)
            if acc is not _MISSING:
                stack.push(p, acc)
        stack.next_pane = w.end
        return stack.result()

    def _fire_pane_window(self, k: Any, w: TimeWindow) -> None:
        """Emit ``w``; chain the timer of the next window if it still holds panes; drop the
        pane that no later window holds (after the allowed lateness)."""
        assert self.panes is not None
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

    def _add_general(self, v: Any, ts: int, k: Any) -> None:
        backend = self.backend
        backend.current_key = k
        for assigned in self.assigner.assign_windows(v, ts):
            w: Window = assigned
            if self.assigner.is_merging:
                merged = self._merge_into(k, assigned)
                if merged is None:
                    self._drop_late(v, ts)
                    continue
                w = merged
            elif self.assigner.is_event_time and self._late(w):
                self._drop_late(v, ts)
                continue
            self.contents.add_batch(self.table, [(k, w, v)])
            backend.current_key = k
            self.tctx.window = w
            result = self.trigger.on_element(v, ts, w, self.tctx)
            self._register_cleanup(w)
            self._apply(result, k, w)

    def _merge_into(self, k: Any, w: Window) -> Window | None:
        """Session windows: merge ``w`` with every window of the key it touches."""
        assert isinstance(w, TimeWindow)
        per_key = self.table.get(k) or {}
        merged = w
        absorbed = []
        for existing in list(per_key):
            if merged.intersects(existing):
                merged = merged.cover(existing)
                absorbed.append(existing)
        if self.assigner.is_event_time and self._late(merged):
            return None
        if absorbed and (len(absorbed) > 1 or absorbed[0] != merged):
            acc: Any = _MISSING
            for old in absorbed:
                part = per_key.pop(old)
                acc = part if acc is _MISSING else self.contents.merge(acc, part)
                self.tctx.window = old
                self.trigger.clear(old, self.tctx)
                self._delete_cleanup(old)
            per_key[merged] = acc
            self.table[k] = per_key
            self.tctx.window = merged
            self.trigger.on_merge(merged, self.tctx)
        return merged

    def _cleanup_time(self, w: Window) -> int | None:
        end = w.max_timestamp()
        if end >= MAX_WATERMARK:
            return None  # the global window lives as long as its key
        return end + self.allowed_lateness

    def _register_cleanup(self, w: Window) -> None:
        t = self._cleanup_time(w)
        if t is None:
            return
        if self.assigner.is_event_time:
            self.timers.register_event_time_timer(t, ("gc", w))
        else:
            self.timers.register_processing_time_timer(t, ("gc", w))

    def _delete_cleanup(self, w: Window) -> None:
        t = self._cleanup_time(w)
        if t is not None:
            self.timers.delete_event_time_timer(t, ("gc", w))
            self.timers.delete_processing_time_timer(t, ("gc", w))

    # -- firing ---------------------------------------------------------------------------
    def _apply(self, result: TriggerResult, k: Any, w: Window) -> None:
        if result.is_fire:
            acc = self.table.get(k, {}).get(w, _MISSING)
            if acc is not _MISSING:
                self._emit(k, w, acc)
        if result.is_purge:
            self._drop_window(k, w)

    def _emit(self, k: Any, w: Window, acc: Any) -> None:
        """Buffer the window's result(s); ``_flush`` sends what a batch, a watermark or a
        processing-time tick fired as one batch."""
        if acc is _MISSING:
            return
        result = self.contents.result(acc)
        ts = w.max_timestamp()
        wf = self.window_function
        if wf is None:
            self._out_values.append(result)
            self._out_stamps.append(ts)
            return
        self.wctx.current = w
        elements = result if self.kind == "process" else [result]
        out = wf.process(k, self.wctx, elements)
        if out is not None:
            values = list(out)
            self._out_values.extend(values)
            self._out_stamps.extend([ts] * len(values))

    def _flush(self) -> None:
        if self._out_values:
            values, stamps = self._out_values, self._out_stamps
            self._out_values, self._out_stamps = [], []
            self.output.emit(values, stamps)

    def _on_timer(self, ts: int, k: Any, namespace: Any, event_time: bool) -> None:
        if type(namespace) is tuple and len(namespace) == 2 and namespace[0] == "gc":
            w = namespace[1]
            # Timers restored from a checkpoint have no order among equal times: a firing of
            # this window due now must happen before its contents are dropped.
            for domain, is_event in ((self.timers.event, True), (self.timers.processing, False)):
                if (ts, k, w) in domain.live:
                    domain.remove(ts, k, w)
                    self._on_timer(ts, k, w, is_event)
            self._clear(k, w)
            return
        w = namespace
        if self.panes is not None:
            self._fire_pane_window(k, w)
            return
        self.tctx.window = w
        trigger = self.trigger
        if event_time:
            result = trigger.on_event_time(ts, w, self.tctx)
        else:
            result = trigger.on_processing_time(ts, w, self.tctx)
        self._apply(result, k, w)

    def _drop_window(self, k: Any, w: Any) -> None:
        per_key = self.table.get(k)
        if per_key is not None and w in per_key:
            del per_key[w]
            if per_key:
                self.table[k] = per_key
            else:
                del self.table[k]

    def _clear(self, k: Any, w: Any) -> None:
        self._drop_window(k, w)
        if self.panes is None:
            self.tctx.window = w
            self.trigger.clear(w, self.tctx)

    def process_watermark(self, watermark: int) -> None:
        self.watermark = watermark
        try:
            self.timers.advance_watermark(watermark, self._fire_event)
        except Exception as e:
            raise self.fail(e, f"<firing windows at watermark {watermark}>") from e
        self._flush()
        self.output.emit_watermark(watermark)

    def _fire_event(self, ts: int, k: Any, namespace: Any) -> None:
        self._on_timer(ts, k, namespace, True)

    def _fire_processing(self, ts: int, k: Any, namespace: Any) -> None:
        self._on_timer(ts, k, namespace, False)

    def tick(self, now_ms: int) -> None:
        due = self.timers.next_processing_time()
        if due is not None and due <= now_ms:
            try:
                self.timers.advance_processing_time(now_ms, self._fire_processing)
            except Exception as e:
                raise self.fail(e, f"<firing windows at processing time {now_ms}>") from e
            self._flush()
