"""The window operator (keyed), general path: assign records to windows, keep one
accumulator per key and window in keyed state, fire through the trigger, clean up after the
allowed lateness.

Contents are ``{key: {window: acc}}`` in the keyed backend (so they checkpoint and rescale with
their keys); see ``contents.py``. Timers carry the window as namespace. This path serves custom
triggers, processing time, sessions (merging windows) and global windows; aligned event-time
windows with the default trigger take ``PaneWindowOperator`` (``panes.py``).
"""

from __future__ import annotations

from typing import Any

from strom.functions.core import close_function, open_function
from strom.runtime.elements import MAX_WATERMARK
from strom.runtime.operators.base import StreamOperator, failed_record
from strom.runtime.operators.keyed import key_function
from strom.runtime.operators.windows.contents import (
    CONTENTS,
    MISSING,
    TRIGGER_STATE,
    FoldError,
    WindowContents,
)
from strom.runtime.timers import TimerService
from strom.windowing import (
    ProcessWindowFunction,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    WindowAssigner,
)
from strom.windowing.windows import Window


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

    # -- lifecycle ------------------------------------------------------------------------
    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        super().initialize_state(snapshots)
        backend = self.ctx.keyed_backend
        assert backend is not None, "window operator without keyed state backend"
        self.backend = backend
        self.timers = TimerService.for_operator(self.ctx, snapshots)

    def open(self) -> None:
        if self.kind != "reduce" and self.function is not None:
            open_function(self.function, self.runtime_context)
        if self.window_function is not None:
            open_function(self.window_function, self.runtime_context)
        self.key = key_function(self.key_selector)
        self.contents = WindowContents(self.kind, self.function)
        self.table = self.backend.table(CONTENTS)
        self.trigger_table = self.backend.table(TRIGGER_STATE)
        self.tctx = _TriggerCtx(self)
        self.wctx = _WindowCtx(self)
        self.late_dropped = self.ctx.metrics.counter("num_late_records_dropped")
        self._out_values: list[Any] = []
        self._out_stamps: list[int] = []

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
        self._add(values, stamps, keys)
        self._flush()  # late firings and triggers that fire on elements

    def _add(self, values: list[Any], stamps: list[int], keys: list[Any]) -> None:
        v: Any = ...
        try:
            for v, ts, k in zip(values, stamps, keys, strict=True):
                self._add_general(v, ts, k)
        except FoldError as e:
            raise self.fail(e.cause, e.value) from e.cause
        except Exception as e:
            raise self.fail(e, v) from e

    def _late(self, window: Window) -> bool:
        return window.max_timestamp() + self.allowed_lateness <= self.watermark

    def _drop_late(self, value: Any, ts: int) -> None:
        if self.late_tag is not None:
            self.side_output(self.late_tag).emit([value], [ts])
        else:
            self.late_dropped.count += 1

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
            acc: Any = MISSING
            for old in absorbed:
                part = per_key.pop(old)
                acc = part if acc is MISSING else self.contents.merge(acc, part)
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
            acc = self.table.get(k, {}).get(w, MISSING)
            if acc is not MISSING:
                self._emit(k, w, acc)
        if result.is_purge:
            self._drop_window(k, w)

    def _emit(self, k: Any, w: Window, acc: Any) -> None:
        """Buffer the window's result(s); ``_flush`` sends what a batch, a watermark or a
        processing-time tick fired as one batch."""
        if acc is MISSING:
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
        self._fire_window(ts, k, namespace, event_time)

    def _fire_window(self, ts: int, k: Any, w: Any, event_time: bool) -> None:
        """A window's timer: ask the trigger."""
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
