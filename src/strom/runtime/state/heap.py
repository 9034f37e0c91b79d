"""Keyed state on the heap: one ``dict`` per state name, read and written for the current key.

The state classes here work on any ``MutableMapping`` table; the disk backend
(``strom.runtime.state.disk``) subclasses this backend and only swaps the tables, so both
backends share every line of state semantics (and of TTL, in ``strom.runtime.state.ttl``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, TypeVar

from strom.errors import StateError
from strom.runtime.keygroups import key_group_of
from strom.runtime.state.base import NO_KEY, KeyedStateBase
from strom.runtime.state.ttl import (
    TtlAggregatingState,
    TtlListState,
    TtlMapState,
    TtlReducingState,
    TtlValueState,
    convert_table,
    purge_expired,
    ttl_enabled,
)
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
    StateTtlConfig,
    ValueState,
    ValueStateDescriptor,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_NO_KEY = NO_KEY
_MISSING = object()


def _call(fn: Any, method: str) -> Any:
    return getattr(fn, method, None) or fn


def _active_ttl(descriptor: StateDescriptor) -> StateTtlConfig | None:
    ttl = descriptor.ttl_config
    return ttl if ttl_enabled(ttl) else None


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_KeyedState = KeyedStateBase


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
        self, backend: HeapKeyedStateBackend, table: MutableMapping[Any, Any], reduce_fn: Any
    ) -> None:
        super().__init__(backend, table)
        self._reduce = _call(reduce_fn, "reduce")

    def get(self) -> T | None:
        return self._table.get(self._key())

    def add(self, value: T) -> None:
        key = self._key()
        current = self._table.get(key, _MISSING)
        self._table[key] = value if current is _MISSING else self._reduce(current, value)


class HeapAggregatingState(_KeyedState, AggregatingState[IN, OUT]):
    def __init__(
        self, backend: HeapKeyedStateBackend, table: MutableMapping[Any, Any], agg: Any
    ) -> None:
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
        acc = self._table.get(key, _MISSING)
        if acc is _MISSING:
            acc = self._agg.create_accumulator()
        self._table[key] = self._agg.add(value, acc)


class HeapKeyedStateBackend(KeyedStateStore):
    """Keyed state of one operator subtask.

    ``tables[name]`` is the ``{key: value}`` table of state ``name`` (a ``dict`` here);
    operators on the hot path may use it directly (``table(descriptor)``), which is what makes
    keyed reduce fast. ``clock`` is the operator's processing time (ms), which TTL uses.
    """

    def __init__(
        self,
        max_parallelism: int,
        key_groups: range | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.max_parallelism = max_parallelism
        self.key_groups = key_groups if key_groups is not None else range(max_parallelism)
        """The key groups this backend holds (its subtask's range)."""
        self.current_key: Any = _NO_KEY
        self.clock: Callable[[], int] = clock or _wall_clock_ms
        self.tables: dict[str, MutableMapping[Any, Any]] = {}
        self._kinds: dict[str, str] = {}
        self._ttl: dict[str, StateTtlConfig | None] = {}

    def set_current_key(self, key: Any) -> None:
        self.current_key = key

    def get_current_key(self) -> Any:
        return None if self.current_key is _NO_KEY else self.current_key

    def _new_table(self, name: str) -> MutableMapping[Any, Any]:
        """An empty table for state ``name`` (the disk backend returns its on-disk view)."""
        return {}

    def _table_named(self, name: str) -> MutableMapping[Any, Any]:
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = self._new_table(name)
        return table

    def table(self, descriptor: StateDescriptor) -> MutableMapping[Any, Any]:
        name, kind = descriptor.name, descriptor.kind
        known = self._kinds.get(name)
        ttl = _active_ttl(descriptor)
        if known is None:
            self._kinds[name] = kind
            self._ttl[name] = ttl
            restored = name in self.tables
            table = self._table_named(name)
            if restored:  # TTL may have been switched on or off since the checkpoint
                convert_table(table, kind, ttl is not None, self.clock())
            return table
        if known != kind:
            raise StateError(
                f"state {name!r} was registered as {known} state and is now "
                f"requested as {kind} state"
            )
        if (self._ttl[name] is None) != (ttl is None):
            had = "with" if self._ttl[name] is not None else "without"
            raise StateError(f"state {name!r} was registered {had} a TTL; use one descriptor")
        return self.tables[name]

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        table, ttl = self.table(descriptor), _active_ttl(descriptor)
        if ttl is not None:
            return TtlValueState(self, table, ttl)
        return HeapValueState(self, table)

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        table, ttl = self.table(descriptor), _active_ttl(descriptor)
        if ttl is not None:
            return TtlListState(self, table, ttl)
        return HeapListState(self, table)

    def get_map_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]:
        table, ttl = self.table(descriptor), _active_ttl(descriptor)
        if ttl is not None:
            return TtlMapState(self, table, ttl)
        return HeapMapState(self, table)

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        table, ttl = self.table(descriptor), _active_ttl(descriptor)
        if ttl is not None:
            reduce = _call(descriptor.reduce_function, "reduce")
            return TtlReducingState(self, table, ttl, reduce)
        return HeapReducingState(self, table, descriptor.reduce_function)

    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[IN, object, OUT]
    ) -> AggregatingState[IN, OUT]:
        table, ttl = self.table(descriptor), _active_ttl(descriptor)
        if ttl is not None:
            return TtlAggregatingState(self, table, ttl, descriptor.agg_function)
        return HeapAggregatingState(self, table, descriptor.agg_function)

    def purge_expired(self) -> None:
        """Drop every expired entry of the TTL states registered so far."""
        now = None
        for name, ttl in self._ttl.items():
            if ttl is not None:
                now = self.clock() if now is None else now
                purge_expired(self.tables[name], self._kinds[name], ttl.ttl_ms, now)

    def snapshot(self) -> dict[str, Any]:
        """The live tables, tagged with the key-group range they cover.

        No per-key work happens here (except dropping expired entries of TTL states): the
        caller serializes the result before the task processes another record (that copy is
        the whole synchronous part of a checkpoint). Keys are hashed into key groups only on a
        restore that changes the ranges.
        """
        self.purge_expired()
        return {
            "key_groups": (self.key_groups.start, self.key_groups.stop),
            "tables": self.tables,
        }

    def restore(self, snapshots: Iterable[dict[str, Any]], owned: range) -> None:
        """Load the keys in key groups ``owned`` from any number of old subtasks' snapshots
        (taken by any backend: the format is shared).

        A snapshot whose range lies inside ``owned`` (same parallelism, or scaling in) is
        taken whole; others are filtered key by key (scaling out, or reshuffled ranges).
        """
        maxp = self.max_parallelism
        for snap in snapshots:
            start, stop = snap["key_groups"]
            whole = owned.start <= start and stop <= owned.stop
            for name, entries in snap["tables"].items():
                table = self._table_named(name)
                if whole:
                    table.update(entries)
                    continue
                for key, value in entries.items():
                    if key_group_of(key, maxp) in owned:
                        table[key] = value

    def close(self) -> None:
        """Release what the backend holds (nothing on the heap; files on disk)."""
