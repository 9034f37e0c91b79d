"""Two-input operators: ``connect`` with co-map / co-flat-map / co-process, keyed or not, and
the broadcast state pattern.

They reuse the process operators' loop: each input swaps in its own per-record function (and,
when keyed, its own key selector) and runs ``ProcessOperator.process_batch``; timers, side
outputs and keyed state work as for one input. Broadcast state lives in operator state
(``get_broadcast_state``), so it is checkpointed and every subtask restores a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.errors import StateError
from strom.functions.co import (
    BroadcastProcessFunction,
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
)
from strom.runtime.operators.keyed import KeyedProcessOperator, key_function
from strom.runtime.operators.simple import ProcessOperator
from strom.runtime.state.base import NO_KEY
from strom.state import MapState, MapStateDescriptor

PerRecord = Callable[[Any, Any], Any]


def side_functions(fn: Any) -> tuple[PerRecord, PerRecord]:
    """The per-record ``(value, ctx) -> iterable`` function of each input."""
    if isinstance(fn, CoMapFunction):
        m1, m2 = fn.map1, fn.map2
        return (lambda v, ctx: (m1(v),)), (lambda v, ctx: (m2(v),))
    if isinstance(fn, CoFlatMapFunction):
        f1, f2 = fn.flat_map1, fn.flat_map2
        return (lambda v, ctx: f1(v)), (lambda v, ctx: f2(v))
    if isinstance(fn, CoProcessFunction | KeyedCoProcessFunction):
        return fn.process_element1, fn.process_element2
    if isinstance(fn, BroadcastProcessFunction | KeyedBroadcastProcessFunction):
        return fn.process_element, fn.process_broadcast_element
    raise TypeError(f"not a two-input function: {type(fn).__name__}")


class _ReadOnlyMap(MapState[Any, Any]):
    def __init__(self, inner: MapState[Any, Any], name: str) -> None:
        self._inner = inner
        self._name = name

    def _refuse(self) -> None:
        raise StateError(
            f"broadcast state {self._name!r} is read-only on the element side; change it in "
            "process_broadcast_element"
        )

    def get(self, key: Any) -> Any:
        return self._inner.get(key)

    def put(self, key: Any, value: Any) -> None:
        self._refuse()

    def put_all(self, entries: dict[Any, Any]) -> None:
        self._refuse()

    def remove(self, key: Any) -> None:
        self._refuse()

    def contains(self, key: Any) -> bool:
        return self._inner.contains(key)

    def items(self) -> Any:
        return self._inner.items()

    def clear(self) -> None:
        self._refuse()


class _TwoInputs:
    """Mixin: route each input through its own function (and key selector)."""

    two_inputs = True
    _f: PerRecord
    _key: Callable[[Any], Any] | None
    _sides: tuple[PerRecord, PerRecord]
    _keys: tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]
    broadcast_side = False

    def _run_side(self, side: int, values: list[Any], timestamps: list[int] | None) -> None:
        self._f = self._sides[side]
        self._key = self._keys[side]
        self.broadcast_side = side == 1
        ProcessOperator.process_batch(self, values, timestamps)  # type: ignore[arg-type]

    def process_batch1(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run_side(0, values, timestamps)

    def process_batch2(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run_side(1, values, timestamps)

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> MapState[Any, Any]:
        state = self.ctx.operator_state.get_broadcast_state(descriptor)  # type: ignore[attr-defined]
        return state if self.broadcast_side else _ReadOnlyMap(state, descriptor.name)


class CoProcessOperator(_TwoInputs, ProcessOperator):
    def open(self) -> None:
        super().open()
        self._sides = side_functions(self.function)
        self._keys = (None, None)
        self._pctx.get_broadcast_state = self.get_broadcast_state  # type: ignore[attr-defined]


class KeyedCoProcessOperator(_TwoInputs, KeyedProcessOperator):
    """Keyed on the first input (and on the second unless it is a broadcast input)."""

    def __init__(
        self, name: str, function: Any, key_selector1: Any, key_selector2: Any | None
    ) -> None:
        super().__init__(name, function, key_selector1)
        self.key_selector2 = key_selector2

    def open(self) -> None:
        super().open()
        self._sides = side_functions(self.function)
        key2 = key_function(self.key_selector2) if self.key_selector2 is not None else None
        self._keys = (self._key, key2)
        self._pctx.get_broadcast_state = self.get_broadcast_state  # type: ignore[attr-defined]

    def _run_side(self, side: int, values: list[Any], timestamps: list[int] | None) -> None:
        if self._keys[side] is None:
            # the broadcast side has no key: keyed state must fail, not read a stale key
            self._backend.current_key = NO_KEY
            self._pctx.key = None
        super()._run_side(side, values, timestamps)
