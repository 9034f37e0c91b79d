"""Keyed state on the heap: one ``dict`` per state name, read and written for the current key."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from strom.errors import StateError
from strom.runtime.keygroups import key_group_of
from strom.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    KeyedStateStore,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueState,
    ValueStateDescriptor,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_NO_KEY = object()


def _call(fn: Any, method: str) -> Any:
    return getattr(fn, method, None) or fn


class _KeyedState:
    def __init__(self, backend: HeapKeyedStateBackend, table: dict[Any, Any]) -> None:
        self._backend = backend
        self._table = table

    def _key(self) -> Any:
        key = self._backend.current_key
        if key is _NO_KEY:
            raise StateError("keyed state used outside of a keyed context (no current key)")
        return key

    def clear(self) -> None:
        self._table.pop(self._key(), None)


class HeapValueState(_KeyedState, ValueState[T]):
    def value(self) -> T | None:
        return self._table.get(self._key())

    def update(self, value: T | None) -> None:
        if value is None:
            self._table.pop(self._key(), None)
        else:
            self._table[self._key()] = value


class HeapListState(_KeyedState, ListState[T]):
    def get(self) -> list[T]:
        return list(self._table.get(self._key(), ()))

    def add(self, value: T) -> None:
        self._table.setdefault(self._key(), []).append(value)

    def add_all(self, values: Iterable[T]) -> None:
        self._table.setdefault(self._key(), []).extend(values)

    def update(self, values: Iterable[T]) -> None:
        new = list(values)
        if new:
            self._table[self._key()] = new
        else:
            self._table.pop(self._key(), None)


class HeapMapState(_KeyedState, MapState[K, V]):
    def _map(self, create: bool) -> dict[K, V]:
        key = self._key()
        m = self._table.get(key)
        if m is None:
            m = {}
            if create:
                self._table[key] = m
        return m

    def get(self, key: K) -> V | None:
        return self._map(False).get(key)

    def put(self, key: K, value: V) -> None:
        self._map(True)[key] = value

    def put_all(self, entries: dict[K, V]) -> None:
        self._map(True).update(entries)

    def remove(self, key: K) -> None:
        m = self._map(False)
        m.pop(key, None)
        if not m:
            self._table.pop(self._key(), None)

    def contains(self, key: K) -> bool:
        return key in self._map(False)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._map(False).items()))


class HeapReducingState(_KeyedState, ReducingState[T]):
    def __init__(
        self, backend: HeapKeyedStateBackend, table: dict[Any, Any], reduce_fn: Any
    ) -> None:
        super().__init__(backend, table)
        self._reduce = _call(reduce_fn, "reduce")

    def get(self) -> T | None:
        return self._table.get(self._key())

    def add(self, value: T) -> None:
        key = self._key()
        current = self._table.get(key, _NO_KEY)
        self._table[key] = value if current is _NO_KEY else self._reduce(current, value)


class HeapAggregatingState(_KeyedState, AggregatingState[IN, OUT]):
    def __init__(self, backend: HeapKeyedStateBackend, table: dict[Any, Any], agg: Any) -> None:
        super().__init__(backend, table)
        self._agg = agg

    def get(self) -> OUT | None:
        key = self._key()
        if key not in self._table:
            return None
        result: OUT = self._agg.get_result(self._table[key])
        return result

    def add(self, value: IN) -> None:
        key = self._key()
        acc = self._table.get(key, _NO_KEY)
        if acc is _NO_KEY:
            acc = self._agg.create_accumulator()
        self._table[key] = self._agg.add(value, acc)


class HeapKeyedStateBackend(KeyedStateStore):
    """Keyed state of one operator subtask.

    ``tables[name]`` is the ``{key: value}`` dict of state ``name``; operators on the hot path
    may use it directly (``table(descriptor)``), which is what makes keyed reduce fast.
    """

    def __init__(self, max_parallelism: int, key_groups: range | None = None) -> None:
        self.max_parallelism = max_parallelism
        self.key_groups = key_groups if key_groups is not None else range(max_parallelism)
        """The key groups this backend holds (its subtask's range)."""
        self.current_key: Any = _NO_KEY
        self.tables: dict[str, dict[Any, Any]] = {}
        self._kinds: dict[str, str] = {}

    def set_current_key(self, key: Any) -> None:
        self.current_key = key

    def get_current_key(self) -> Any:
        return None if self.current_key is _NO_KEY else self.current_key

    def table(self, descriptor: StateDescriptor) -> dict[Any, Any]:
        kind = descriptor.kind
        known = self._kinds.setdefault(descriptor.name, kind)
        if known != kind:
            raise StateError(
                f"state {descriptor.name!r} was registered as {known} state and is now "
                f"requested as {kind} state"
            )
        return self.tables.setdefault(descriptor.name, {})

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        return HeapValueState(self, self.table(descriptor))

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return HeapListState(self, self.table(descriptor))

    def get_map_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]:
        return HeapMapState(self, self.table(descriptor))

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        return HeapReducingState(self, self.table(descriptor), descriptor.reduce_function)

    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[IN, object, OUT]
    ) -> AggregatingState[IN, OUT]:
        return HeapAggregatingState(self, self.table(descriptor), descriptor.agg_function)

    def snapshot(self) -> dict[str, Any]:
        """The live tables, tagged with the key-group range they cover.

        No per-key work happens here: the caller serializes the result before the task
        processes another record (that copy is the whole synchronous part of a checkpoint).
        Keys are hashed into key groups only on a restore that changes the ranges.
        """
        return {
            "key_groups": (self.key_groups.start, self.key_groups.stop),
            "tables": self.tables,
        }

    def restore(self, snapshots: Iterable[dict[str, Any]], owned: range) -> None:
        """Load the keys in key groups ``owned`` from any number of old subtasks' snapshots.

        A snapshot whose range lies inside ``owned`` (same parallelism, or scaling in) is
        taken whole; others are filtered key by key (scaling out, or reshuffled ranges).
        """
        maxp = self.max_parallelism
        for snap in snapshots:
            start, stop = snap["key_groups"]
            whole = owned.start <= start and stop <= owned.stop
            for name, entries in snap["tables"].items():
                table = self.tables.setdefault(name, {})
                if whole:
                    table.update(entries)
                    continue
                for key, value in entries.items():
                    if key_group_of(key, maxp) in owned:
                        table[key] = value
