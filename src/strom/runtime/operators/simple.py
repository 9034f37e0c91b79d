"""Record-at-a-time operators run batch-at-a-time: map, flat_map, filter, process.

Each loops over a whole batch, in C where possible (``list(map(f, batch))``); a failure still
names the record that caused it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress
from typing import Any

from strom.errors import StateError
from strom.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    MapFunction,
    OutputTag,
    TimeDomain,
    TimerService,
)
from strom.runtime.operators.base import StreamOperator, failed_record


class MapOperator(StreamOperator):
    def open(self) -> None:
        super().open()
        self._f = self.function.map if isinstance(self.function, MapFunction) else self.function

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        # list(map(...)) keeps the loop in C; the iterator tells which record failed
        it = iter(values)
        try:
            out = list(map(self._f, it))
        except Exception as e:
            raise self.fail(e, failed_record(values, it)) from e
        self.output.emit(out, timestamps)


class FilterOperator(StreamOperator):
    def open(self) -> None:
        super().open()
        fn = self.function
        self._f = fn.filter if isinstance(fn, FilterFunction) else fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        it = iter(values)
        try:
            if timestamps is None:
                out = list(filter(self._f, it))
            else:
                keep = list(map(self._f, it))
        except Exception as e:
            raise self.fail(e, failed_record(values, it)) from e
        if timestamps is None:
            if out:
                self.output.emit(out, None)
            return
        out = list(compress(values, keep))
        if out:
            self.output.emit(out, list(compress(timestamps, keep)))


class FlatMapOperator(StreamOperator):
    def open(self) -> None:
        super().open()
        fn = self.function
        self._f = fn.flat_map if isinstance(fn, FlatMapFunction) else fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self._f
        out: list[Any] = []
        extend = out.extend
        v: Any = ...
        try:
            if timestamps is None:
                for v in values:
                    r = f(v)
                    if r is not None:
                        extend(r)
                ts_out = None
            else:
                ts_out = []
                for v, t in zip(values, timestamps, strict=True):
                    r = f(v)
                    if r is not None:
                        n = len(out)
                        extend(r)
                        ts_out.extend([t] * (len(out) - n))
        except Exception as e:
            raise self.fail(e, v) from e
        if out:
            self.output.emit(out, ts_out)


class _ProcessContext(KeyedProcessFunction.OnTimerContext, TimerService):
    """The context of process functions; also their timer service (timers need keys)."""

    __slots__ = ("_op", "domain", "key", "ts")

    def __init__(self, op: ProcessOperator) -> None:
        self._op = op
        self.ts: int | None = None
        self.key: Any = None
        self.domain = TimeDomain.EVENT_TIME

    def timestamp(self) -> int | None:
        return self.ts

    def current_processing_time(self) -> int:
        return self._op.ctx.processing_time()

    def current_watermark(self) -> int:
        return self._op.ctx.current_watermark()

    def get_current_key(self) -> Any:
        return self.key

    def time_domain(self) -> TimeDomain:
        return self.domain

    def timer_service(self) -> TimerService:
        return self

    def _timers(self) -> Any:
        timers = self._op.timers
        if timers is None:
            raise StateError(
                f"operator {self._op.name!r}: timers are only available on a keyed stream "
                "(use key_by(...).process(...))"
            )
        return timers

    def register_event_time_timer(self, timestamp: int) -> None:
        self._timers().register_event_time_timer(timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._timers().register_processing_time_timer(timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        self._timers().delete_event_time_timer(timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self._timers().delete_processing_time_timer(timestamp)


class ProcessOperator(StreamOperator):
    """``DataStream.process``: the function yields zero or more outputs per record;
    ``yield tag, value`` (an ``OutputTag`` first) goes to that side output.

    The keyed variant (``KeyedProcessOperator``) only adds ``_key``/``_backend``/``timers``:
    the same loop then sets the current key before each call.
    """

    _key: Callable[[Any], Any] | None = None
    _backend: Any = None
    timers: Any = None

    def open(self) -> None:
        super().open()
        fn = self.function
        self._f = getattr(fn, "process_element", fn)
        self._pctx = _ProcessContext(self)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, ctx, key, backend = self._f, self._pctx, self._key, self._backend
        out: list[Any] = []
        ts_out: list[int] | None = None if timestamps is None else []
        v: Any = ...
        try:
            for i, v in enumerate(values):
                if key is not None:
                    ctx.key = backend.current_key = key(v)
                ctx.ts = None if timestamps is None else timestamps[i]
                r = f(v, ctx)
                if r is None:
                    continue
                n = len(out)
                out.extend(r)
                if ts_out is not None and timestamps is not None:
                    ts_out.extend([timestamps[i]] * (len(out) - n))
        except Exception as e:
            raise self.fail(e, v) from e
        if out:
            self.emit_with_side_outputs(out, ts_out)

    def emit_with_side_outputs(self, out: list[Any], ts_out: list[int] | None) -> None:
        """Split ``(OutputTag, value)`` items off to their side outputs, emit the rest."""
        side = [
            i
            for i, item in enumerate(out)
            if type(item) is tuple and len(item) == 2 and type(item[0]) is OutputTag
        ]
        if not side:
            self.output.emit(out, ts_out)
            return
        main: list[Any] = []
        main_ts: list[int] | None = None if ts_out is None else []
        tagged: dict[OutputTag, tuple[list[Any], list[int] | None]] = {}
        side_set = set(side)
        for i, item in enumerate(out):
            if i in side_set:
                tag, value = item
                values, stamps = tagged.setdefault(tag, ([], None if ts_out is None else []))
                values.append(value)
                if stamps is not None and ts_out is not None:
                    stamps.append(ts_out[i])
            else:
                main.append(item)
                if main_ts is not None and ts_out is not None:
                    main_ts.append(ts_out[i])
        if main:
            self.output.emit(main, main_ts)
        for tag, (values, stamps) in tagged.items():
            self.side_output(tag.tag_id).emit(values, stamps)
