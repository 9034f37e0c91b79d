"""Operator state of one subtask: list state (split on rescale) and union list state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from strom.state import ListState, ListStateDescriptor, OperatorStateStore

T = TypeVar("T")


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


class OperatorStateBackend(OperatorStateStore):
    """``snapshot()`` -> ``{"list": {name: [...]}, "union": {name: [...]}}``."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {}
        self.unions: dict[str, list[Any]] = {}
        self.restored = False

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return OperatorListState(self.lists.setdefault(descriptor.name, []))

    def get_union_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return OperatorListState(self.unions.setdefault(descriptor.name, []))

    def snapshot(self) -> dict[str, dict[str, list[Any]]]:
        return {
            "list": {k: list(v) for k, v in self.lists.items()},
            "union": {k: list(v) for k, v in self.unions.items()},
        }

    def restore(
        self, snapshots: Sequence[dict[str, dict[str, list[Any]]]], subtask: int, parallelism: int
    ) -> None:
        """Union lists: everything to everyone. Lists: old entries dealt round-robin."""
        self.restored = True
        for snap in snapshots:
            for name, items in snap.get("union", {}).items():
                self.unions.setdefault(name, []).extend(items)
        merged: dict[str, list[Any]] = {}
        for snap in snapshots:
            for name, items in snap.get("list", {}).items():
                merged.setdefault(name, []).extend(items)
        for name, items in merged.items():
            self.lists.setdefault(name, []).extend(items[subtask::parallelism])
