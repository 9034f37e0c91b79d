"""Record-at-a-time operators run batch-at-a-time: map, flat_map, filter, process.

Each loops over a whole batch, in C where possible (``list(map(f, batch))``); a failure still
names the record that caused it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress
from typing import Any

from strom.functions import FilterFunction, FlatMapFunction, KeyedProcessFunction, MapFunction
from strom.runtime.operators.base import StreamOperator


def _failed_record(values: list[Any], it: Any) -> Any:
    """The record a C-level ``map``/``filter`` over ``it = iter(values)`` was processing when
    the function raised: the iterator has advanced exactly past it."""
    remaining = it.__length_hint__()
    index = len(values) - remaining - 1
    return values[index] if 0 <= index < len(values) else ...


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
            raise self.fail(e, _failed_record(values, it)) from e
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
            raise self.fail(e, _failed_record(values, it)) from e
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


class _ProcessContext(KeyedProcessFunction.Context):
    __slots__ = ("_op", "key", "ts")

    def __init__(self, op: StreamOperator) -> None:
        self._op = op
        self.ts: int | None = None
        self.key: Any = None

    def timestamp(self) -> int | None:
        return self.ts

    def current_processing_time(self) -> int:
        return self._op.ctx.processing_time()

    def current_watermark(self) -> int:
        return self._op.ctx.current_watermark()

    def get_current_key(self) -> Any:
        return self.key


class ProcessOperator(StreamOperator):
    """``DataStream.process``: the function yields zero or more outputs per record.

    The keyed variant (``KeyedProcessOperator``) only adds ``_key``/``_backend``: the same loop
    then sets the current key before each call.
    """

    _key: Callable[[Any], Any] | None = None
    _backend: Any = None

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
            self.output.emit(out, ts_out)
