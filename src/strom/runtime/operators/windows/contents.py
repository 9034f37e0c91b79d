"""What a window holds per key: the reduced value, the ``AggregateFunction`` accumulator, or
the list of elements (for a ``ProcessWindowFunction``), and how those are built and combined."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from strom.functions import AggregateFunction, ReduceFunction
from strom.state import ValueStateDescriptor

MISSING: Any = object()
CONTENTS: ValueStateDescriptor[Any] = ValueStateDescriptor("_window_contents")
"""``{key: {window (or pane start): acc}}`` in the keyed backend."""
TRIGGER_STATE: ValueStateDescriptor[Any] = ValueStateDescriptor("_window_trigger")


class WindowContents:
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
        what is assigned, not in-place changes. A function that fails raises ``FoldError``
        naming the value it failed on.
        """
        new: list[tuple[Any, Any]] = []
        kind = self.kind
        touched: dict[Any, dict[Any, Any]] = {}
        v: Any = ...
        try:
            for k, w, v in items:
                per_key = touched.get(k)
                if per_key is None:
                    per_key = table.get(k)
                    if per_key is None:
                        per_key = {}
                    touched[k] = per_key
                acc = per_key.get(w, MISSING)
                if acc is MISSING:
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
        except Exception as e:
            raise FoldError(e, v) from e
        finally:
            for k, per_key in touched.items():
                table[k] = per_key
        return new


class FoldError(Exception):
    """A window function failed while folding ``value`` into a window."""

    def __init__(self, cause: Exception, value: Any) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.value = value
