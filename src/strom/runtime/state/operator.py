"""Operator state of one subtask: list state (split on rescale) and union list state."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from strom.state import (
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    OperatorStateStore,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class OperatorListState(ListState[T]):
    def __init__(self, items: list[T]) -> None:
        self._items = items

    def get(self) -> list[T]:
        return list(self._items)

    def add(self, value: T) -> None:
        self._items.append(value)

    def add_all(self, values: Iterable[T]) -> None:
        self._items.extend(values)

    def update(self, values: Iterable[T]) -> None:
        self._items[:] = list(values)

    def clear(self) -> None:
        self._items.clear()


class BroadcastMapState(MapState[K, V]):
    def __init__(self, entries: dict[K, V]) -> None:
        self._entries = entries

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value

    def put_all(self, entries: dict[K, V]) -> None:
        self._entries.update(entries)

    def remove(self, key: K) -> None:
        self._entries.pop(key, None)

    def contains(self, key: K) -> bool:
        return key in self._entries

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._entries.items()))

    def clear(self) -> None:
        self._entries.clear()


class OperatorStateBackend(OperatorStateStore):
    """``snapshot()`` -> ``{"list": {name: [...]}, "union": {name: [...]},
    "broadcast": {name: {...}}}``."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {}
        self.unions: dict[str, list[Any]] = {}
        self.broadcasts: dict[str, dict[Any, Any]] = {}
        self.restored = False

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return OperatorListState(self.lists.setdefault(descriptor.name, []))

    def get_union_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return OperatorListState(self.unions.setdefault(descriptor.name, []))

    def get_broadcast_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]:
        return BroadcastMapState(self.broadcasts.setdefault(descriptor.name, {}))

    @property
    def empty(self) -> bool:
        return not (self.lists or self.unions or self.broadcasts)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            "list": {k: list(v) for k, v in self.lists.items()},
            "union": {k: list(v) for k, v in self.unions.items()},
            "broadcast": {k: dict(v) for k, v in self.broadcasts.items()},
        }

    def restore(
        self, snapshots: Sequence[dict[str, dict[str, Any]]], subtask: int, parallelism: int
    ) -> None:
        """Union lists: everything to everyone. Lists: old entries dealt round-robin.
        Broadcast maps: every subtask held the same, so any old subtask's copy will do."""
        self.restored = True
        for snap in snapshots[:1]:
            for name, entries in snap.get("broadcast", {}).items():
                self.broadcasts.setdefault(name, {}).update(entries)
        for snap in snapshots:
            for name, items in snap.get("union", {}).items():
                self.unions.setdefault(name, []).extend(items)
        merged: dict[str, list[Any]] = {}
        for snap in snapshots:
            for name, items in snap.get("list", {}).items():
                merged.setdefault(name, []).extend(items)
        for name, items in merged.items():
            self.lists.setdefault(name, []).extend(items[subtask::parallelism])
