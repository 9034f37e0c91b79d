"""Keyed state with time-to-live, shared by every backend (they differ only in the table).

A TTL state keeps ``TtlValue(value, timestamp)`` in its table, ``timestamp`` being the
processing time of the last write (or read, with ``OnReadAndWrite``). Value, reducing and
aggregating states wrap the whole value; list state wraps each element and map state each map
value, as Flink does. Expiry follows Flink's ``AbstractTtlDecorator``: an entry is expired once
``timestamp + ttl <= now``; an expired entry found on access is removed, and returned only with
``ReturnExpiredIfNotCleanedUp``. ``purge_expired`` removes the rest before a snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, NamedTuple, TypeVar

from strom.runtime.state.base import KeyContext, KeyedStateBase
from strom.state import AggregatingState, ListState, MapState, ReducingState, ValueState
from strom.state.ttl import StateTtlConfig

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_MISSING: Any = object()
VALUE_KINDS = frozenset({"value", "reducing", "aggregating"})
"""Kinds whose whole per-key value carries one timestamp (list and map wrap each element)."""


class TtlValue(NamedTuple):
    """A value with the processing time (ms) it was last written or read at.

    It is what checkpoints hold for TTL states, whichever backend wrote them.
    """

    value: Any
    timestamp: int


def ttl_enabled(config: StateTtlConfig | None) -> bool:
    return config is not None and config.is_enabled()


class _TtlState(KeyedStateBase):
    def __init__(
        self, backend: KeyContext, table: MutableMapping[Any, Any], config: StateTtlConfig
    ) -> None:
        super().__init__(backend, table)
        self._ttl = config.ttl_ms
        self._on_read = config.update_type is StateTtlConfig.UpdateType.OnReadAndWrite
        self._return_expired = (
            config.state_visibility is StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp
        )
        self._now = backend.clock

    def _read(self, key: Any, now: int, *, for_update: bool = False) -> Any:
        """The value of ``key`` or ``_MISSING``, with Flink's expiry rules; an expired entry is
        removed, and still returned only with ``ReturnExpiredIfNotCleanedUp``."""
        entry = self._table.get(key)
        if entry is None:
            return _MISSING
        if entry.timestamp + self._ttl <= now:
            del self._table[key]
            return entry.value if self._return_expired else _MISSING
        if self._on_read and not for_update:
            self._table[key] = TtlValue(entry.value, now)
        return entry.value


class TtlValueState(_TtlState, ValueState[T]):
    def value(self) -> T | None:
        v = self._read(self._key(), self._now())
        return None if v is _MISSING else v

    def update(self, value: T | None) -> None:
        if value is None:
            self._table.pop(self._key(), None)
        else:
            self._table[self._key()] = TtlValue(value, self._now())


class TtlReducingState(_TtlState, ReducingState[T]):
    def __init__(
        self,
        backend: KeyContext,
        table: MutableMapping[Any, Any],
        config: StateTtlConfig,
        reduce: Any,
    ) -> None:
        super().__init__(backend, table, config)
        self._reduce = reduce

    def get(self) -> T | None:
        v = self._read(self._key(), self._now())
        return None if v is _MISSING else v

    def add(self, value: T) -> None:
        key, now = self._key(), self._now()
        current = self._read(key, now, for_update=True)
        new = value if current is _MISSING else self._reduce(current, value)
        self._table[key] = TtlValue(new, now)


class TtlAggregatingState(_TtlState, AggregatingState[IN, OUT]):
    def __init__(
        self,
        backend: KeyContext,
        table: MutableMapping[Any, Any],
        config: StateTtlConfig,
        agg: Any,
    ) -> None:
        super().__init__(backend, table, config)
        self._agg = agg

    def get(self) -> OUT | None:
        acc = self._read(self._key(), self._now())
        if acc is _MISSING:
            return None
        result: OUT = self._agg.get_result(acc)
        return result

    def add(self, value: IN) -> None:
        key, now = self._key(), self._now()
        acc = self._read(key, now, for_update=True)
        if acc is _MISSING:
            acc = self._agg.create_accumulator()
        self._table[key] = TtlValue(self._agg.add(value, acc), now)


class TtlListState(_TtlState, ListState[T]):
    def get(self) -> list[T]:
        key, now, ttl = self._key(), self._now(), self._ttl
        elements: list[TtlValue] | None = self._table.get(key)
        if not elements:
            return []
        live = [e for e in elements if e.timestamp + ttl > now]
        result = [e.value for e in (elements if self._return_expired else live)]
        if self._on_read:
            live = [TtlValue(e.value, now) for e in live]
        elif len(live) == len(elements):
            return result
        if live:
            self._table[key] = live
        else:
            del self._table[key]
        return result

    def add(self, value: T) -> None:
        key = self._key()
        elements = self._table.get(key)
        entry = TtlValue(value, self._now())
        if elements is None:
            self._table[key] = [entry]
        else:
            elements.append(entry)
            self._table[key] = elements  # a write, so an on-disk table stores the new list

    def add_all(self, values: Iterable[T]) -> None:
        now = self._now()
        new = [TtlValue(v, now) for v in values]
        if new:
            key = self._key()
            self._table[key] = (self._table.get(key) or []) + new

    def update(self, values: Iterable[T]) -> None:
        now = self._now()
        new = [TtlValue(v, now) for v in values]
        if new:
            self._table[self._key()] = new
        else:
            self._table.pop(self._key(), None)


class TtlMapState(_TtlState, MapState[K, V]):
    def _entry(self, user_key: K, now: int) -> Any:
        key = self._key()
        m: dict[Any, TtlValue] | None = self._table.get(key)
        if m is None:
            return _MISSING
        entry = m.get(user_key)
        if entry is None:
            return _MISSING
        if entry.timestamp + self._ttl <= now:
            del m[user_key]
            self._store(key, m)
            return entry.value if self._return_expired else _MISSING
        if self._on_read:
            m[user_key] = TtlValue(entry.value, now)
            self._store(key, m)
        return entry.value

    def _store(self, key: Any, m: dict[Any, TtlValue]) -> None:
        if m:
            self._table[key] = m
        else:
            self._table.pop(key, None)

    def get(self, key: K) -> V | None:
        v = self._entry(key, self._now())
        return None if v is _MISSING else v

    def contains(self, key: K) -> bool:
        return self._entry(key, self._now()) is not _MISSING

    def put(self, key: K, value: V) -> None:
        self.put_all({key: value})

    def put_all(self, entries: dict[K, V]) -> None:
        key, now = self._key(), self._now()
        m = self._table.get(key)
        if m is None:
            m = {}
        for k, v in entries.items():
            m[k] = TtlValue(v, now)
        self._store(key, m)

    def remove(self, key: K) -> None:
        state_key = self._key()
        m = self._table.get(state_key)
        if m is not None and key in m:
            del m[key]
            self._store(state_key, m)

    def items(self) -> Iterator[tuple[K, V]]:
        key, now, ttl = self._key(), self._now(), self._ttl
        m: dict[Any, TtlValue] | None = self._table.get(key)
        if not m:
            return iter(())
        live = {k: e for k, e in m.items() if e.timestamp + ttl > now}
        shown = m if self._return_expired else live
        result = [(k, e.value) for k, e in shown.items()]
        if self._on_read:
            live = {k: TtlValue(e.value, now) for k, e in live.items()}
        elif len(live) == len(m):
            return iter(result)
        self._store(key, live)
        return iter(result)


def purge_expired(table: MutableMapping[Any, Any], kind: str, ttl_ms: int, now: int) -> int:
    """Remove every expired entry (and expired list element / map value) of a TTL table;
    returns how many keys changed. Runs before a snapshot, so nothing expired is checkpointed."""
    changes: list[tuple[Any, Any]] = []
    if kind in VALUE_KINDS:
        changes = [(k, _MISSING) for k, e in table.items() if e.timestamp + ttl_ms <= now]
    elif kind == "list":
        for k, elements in table.items():
            live = [e for e in elements if e.timestamp + ttl_ms > now]
            if len(live) != len(elements):
                changes.append((k, live or _MISSING))
    elif kind == "map":
        for k, m in table.items():
            live_map = {uk: e for uk, e in m.items() if e.timestamp + ttl_ms > now}
            if len(live_map) != len(m):
                changes.append((k, live_map or _MISSING))
    for k, new in changes:  # after the scan: an on-disk table must not change while scanned
        if new is _MISSING:
            del table[k]
        else:
            table[k] = new
    return len(changes)


def _is_wrapped(kind: str, sample: Any) -> bool:
    if kind in VALUE_KINDS:
        return type(sample) is TtlValue
    if kind == "list":
        return bool(sample) and type(sample[0]) is TtlValue
    if kind == "map":
        return bool(sample) and type(next(iter(sample.values()))) is TtlValue
    return False


def convert_table(table: MutableMapping[Any, Any], kind: str, ttl: bool, now: int) -> None:
    """Adapt restored entries when a state's TTL was switched on or off since the checkpoint:
    entries without a timestamp start their TTL ``now``; unwrapped ones lose theirs."""
    first = next(iter(table.items()), None)
    if first is None or _is_wrapped(kind, first[1]) == ttl:
        return
    converted: list[tuple[Any, Any]] = []
    for k, v in table.items():
        if kind in VALUE_KINDS:
            new: Any = TtlValue(v, now) if ttl else v.value
        elif kind == "list":
            new = [TtlValue(e, now) for e in v] if ttl else [e.value for e in v]
        else:
            new = (
                {uk: TtlValue(e, now) for uk, e in v.items()}
                if ttl
                else {uk: e.value for uk, e in v.items()}
            )
        converted.append((k, new))
    for k, new in converted:
        table[k] = new
