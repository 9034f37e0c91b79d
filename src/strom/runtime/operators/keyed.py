"""Operators on a keyed stream: rolling reduce / aggregations and keyed process functions.

The key selector runs again on the receiving side (the partitioner only routes); keyed state
lives in the subtask's ``HeapKeyedStateBackend``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from strom.functions import KeySelector, ReduceFunction
from strom.runtime.operators.base import StreamOperator
from strom.runtime.operators.simple import ProcessOperator
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
    """``KeyedStream.process``: ``ProcessOperator``'s loop with the current key set."""

    def __init__(self, name: str, function: Any, key_selector: Any) -> None:
        super().__init__(name, function)
        self.key_selector = key_selector

    def open(self) -> None:
        super().open()
        self._key = key_function(self.key_selector)
        backend = self.ctx.keyed_backend
        assert backend is not None, "keyed operator without keyed state backend"
        self._backend = backend


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
