"""State interfaces: what ``get_state(descriptor)`` and friends return.

Keyed states act on the *current key*, which the runtime sets before it calls the user function
for a record (or a timer). Operator states belong to one operator subtask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from strom.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")


class State(ABC):
    @abstractmethod
    def clear(self) -> None:
        """Remove the value for the current key (keyed) or the whole state (operator)."""


class ValueState(State, Generic[T]):
    @abstractmethod
    def value(self) -> T | None: ...

    @abstractmethod
    def update(self, value: T | None) -> None: ...


class ListState(State, Generic[T]):
    @abstractmethod
    def get(self) -> list[T]:
        """A copy of the list (empty when unset)."""

    @abstractmethod
    def add(self, value: T) -> None: ...

    @abstractmethod
    def add_all(self, values: Iterable[T]) -> None: ...

    @abstractmethod
    def update(self, values: Iterable[T]) -> None: ...

    def __iter__(self) -> Iterator[T]:
        return iter(self.get())


class MapState(State, Generic[K, V]):
    @abstractmethod
    def get(self, key: K) -> V | None: ...

    @abstractmethod
    def put(self, key: K, value: V) -> None: ...

    @abstractmethod
    def put_all(self, entries: dict[K, V]) -> None: ...

    @abstractmethod
    def remove(self, key: K) -> None: ...

    @abstractmethod
    def contains(self, key: K) -> bool: ...

    @abstractmethod
    def items(self) -> Iterator[tuple[K, V]]: ...

    def keys(self) -> Iterator[K]:
        return (k for k, _ in self.items())

    def values(self) -> Iterator[V]:
        return (v for _, v in self.items())

    def is_empty(self) -> bool:
        return next(self.items(), None) is None


class ReducingState(State, Generic[T]):
    @abstractmethod
    def get(self) -> T | None: ...

    @abstractmethod
    def add(self, value: T) -> None: ...


class AggregatingState(State, Generic[IN, OUT]):
    @abstractmethod
    def get(self) -> OUT | None: ...

    @abstractmethod
    def add(self, value: IN) -> None: ...


class KeyedStateStore(ABC):
    """Hands out keyed states; they read and write the value of the current key."""

    @abstractmethod
    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]: ...

    @abstractmethod
    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...

    @abstractmethod
    def get_map_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]: ...

    @abstractmethod
    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]: ...

    @abstractmethod
    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[IN, object, OUT]
    ) -> AggregatingState[IN, OUT]: ...


class OperatorStateStore(ABC):
    """Operator (non-keyed) state of one subtask.

    * list state is split round-robin among subtasks when a job restores at another parallelism;
    * union list state gives every subtask the union of all subtasks' lists on restore;
    * broadcast state is a map every subtask holds identically; each restores a copy.
    """

    @abstractmethod
    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...

    @abstractmethod
    def get_union_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...

    @abstractmethod
    def get_broadcast_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]:
        """A map that is the same on every subtask (it is fed by a broadcast stream); on
        restore, at any parallelism, every subtask gets a copy."""
