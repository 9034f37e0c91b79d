"""Operators on a keyed stream: rolling reduce / aggregations and keyed process functions.

The key selector runs again on the receiving side (the partitioner only routes); keyed state
lives in the subtask's ``HeapKeyedStateBackend``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from strom.functions import KeySelector, ReduceFunction, TimeDomain
from strom.runtime.operators.base import StreamOperator
from strom.runtime.operators.simple import ProcessOperator
from strom.runtime.timers import TimerService
from strom.state import ValueStateDescriptor

_MISSING = object()


def key_function(selector: Any) -> Callable[[Any], Any]:
    return selector.get_key if isinstance(selector, KeySelector) else selector


class KeyedOperator(StreamOperator):
    def __init__(self, name: str, function: Any, key_selector: Any) -> None:
        super().__init__(name, function)
        self.key_selector = key_selector

    def open(self) -> None:
        super().open()
        self._key = key_function(self.key_selector)


class KeyedReduceOperator(KeyedOperator):
    """Rolling reduce: emits the updated aggregate for every input record (as Flink does)."""

    STATE: ValueStateDescriptor[Any] = ValueStateDescriptor("_reduce")

    def open(self) -> None:
        super().open()
        fn = self.function
        self._reduce = fn.reduce if isinstance(fn, ReduceFunction) else fn
        backend = self.ctx.keyed_backend
        assert backend is not None, "keyed operator without keyed state backend"
        self._table = backend.table(self.STATE)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        key, reduce, table = self._key, self._reduce, self._table
        get = table.get
        out: list[Any] = []
        append = out.append
        v: Any = ...
        try:
            for v in values:
                k = key(v)
                acc = get(k, _MISSING)
                acc = v if acc is _MISSING else reduce(acc, v)
                table[k] = acc
                append(acc)
        except Exception as e:
            raise self.fail(e, v) from e
        self.output.emit(out, timestamps)


class KeyedProcessOperator(ProcessOperator):
    """``KeyedStream.process``: ``ProcessOperator``'s loop with the current key set, plus
    timers: event-time timers fire as the watermark passes them, processing-time timers as
    the clock does; both call ``on_timer`` with the timer's key as current key."""

    uses_ticks = True

    def __init__(self, name: str, function: Any, key_selector: Any) -> None:
        super().__init__(name, function)
        self.key_selector = key_selector
        self._restored_timers: list[dict[str, Any]] = []

    def initialize_state(self, snapshots: list[dict[str, Any]] | None) -> None:
        super().initialize_state(snapshots)
        backend = self.ctx.keyed_backend
        assert backend is not None, "keyed operator without keyed state backend"
        self._backend = backend
        self.timers = TimerService.for_operator(self.ctx, snapshots)

    def open(self) -> None:
        super().open()
        self._key = key_function(self.key_selector)
        self._on_timer = getattr(self.function, "on_timer", None)

    def process_watermark(self, watermark: int) -> None:
        self.watermark = watermark
        self.timers.advance_watermark(watermark, self._fire_event_timer)
        self.output.emit_watermark(watermark)

    def tick(self, now_ms: int) -> None:
        due = self.timers.next_processing_time()
        if due is not None and due <= now_ms:
            self.timers.advance_processing_time(now_ms, self._fire_processing_timer)

    def _fire_event_timer(self, ts: int, key: Any, namespace: Any) -> None:
        self._fire(ts, key, TimeDomain.EVENT_TIME)

    def _fire_processing_timer(self, ts: int, key: Any, namespace: Any) -> None:
        self._fire(ts, key, TimeDomain.PROCESSING_TIME)

    def _fire(self, ts: int, key: Any, domain: TimeDomain) -> None:
        if self._on_timer is None:
            return
        ctx = self._pctx
        ctx.key, ctx.domain = key, domain
        ctx.ts = ts if domain is TimeDomain.EVENT_TIME else None
        try:
            r = self._on_timer(ts, ctx)
            out = list(r) if r is not None else []
        except Exception as e:
            raise self.fail(e, f"<{domain.value} timer {ts} of key {key!r}>") from e
        if out:
            stamps = [ts] * len(out) if domain is TimeDomain.EVENT_TIME else None
            self.emit_with_side_outputs(out, stamps)

    def snapshot_state(self, checkpoint_id: int, timestamp: int) -> dict[str, Any]:
        snap = super().snapshot_state(checkpoint_id, timestamp)
        snap["timers"] = self.timers.snapshot()
        return snap


def _getter(field: int | str | None) -> Callable[[Any], Any]:
    if field is None:
        return lambda v: v
    return operator.itemgetter(field)


def _replace(record: Any, field: int | str | None, value: Any) -> Any:
    if field is None:
        return value
    if isinstance(record, dict):
        new = dict(record)
        new[field] = value
        return new
    if isinstance(record, tuple) and isinstance(field, int):
        if hasattr(record, "_replace"):  # namedtuple
            return record._replace(**{record._fields[field]: value})  # type: ignore[attr-defined]
        return (*record[:field], value, *record[field + 1 :])
    if isinstance(record, list) and isinstance(field, int):
        new_list = list(record)
        new_list[field] = value
        return new_list
    raise TypeError(
        f"cannot aggregate field {field!r} of a {type(record).__name__}; "
        "use tuples, lists or dicts, or a reduce function"
    )


def field_aggregation(kind: str, field: int | str | None) -> Callable[[Any, Any], Any]:
    """The reduce function behind ``sum``/``min``/``max``/``min_by``/``max_by``.

    ``sum``/``min``/``max`` keep the other fields of the first record (Flink's semantics);
    ``min_by``/``max_by`` keep the whole record holding the extreme value (the first on ties).
    """
    get = _getter(field)
    if kind == "sum":
        return lambda a, b: _replace(a, field, get(a) + get(b))
    if kind == "min":
        return lambda a, b: a if get(a) <= get(b) else _replace(a, field, get(b))
    if kind == "max":
        return lambda a, b: a if get(a) >= get(b) else _replace(a, field, get(b))
    if kind == "min_by":
        return lambda a, b: a if get(a) <= get(b) else b
    if kind == "max_by":
        return lambda a, b: a if get(a) >= get(b) else b
    raise ValueError(f"unknown aggregation {kind!r}")
