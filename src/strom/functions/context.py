"""Contexts the runtime hands to user functions (implemented in ``strom.runtime``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypeVar

from strom.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    KeyedStateStore,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    OperatorStateStore,
    ReducingState,
    ReducingStateDescriptor,
    ValueState,
    ValueStateDescriptor,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")


class Accumulator(ABC):
    """A value a job sums up across subtasks and returns in its ``JobExecutionResult``."""

    @abstractmethod
    def add(self, value: Any) -> None: ...

    @abstractmethod
    def get_local_value(self) -> Any: ...

    @abstractmethod
    def merge(self, other: Accumulator) -> None: ...


class IntCounter(Accumulator):
    def __init__(self, value: int = 0) -> None:
        self.value = value

    def add(self, value: Any = 1) -> None:
        self.value += int(value)

    def get_local_value(self) -> int:
        return self.value

    def merge(self, other: Accumulator) -> None:
        self.value += int(other.get_local_value())


class ListAccumulator(Accumulator):
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> None:
        self.values.append(value)

    def get_local_value(self) -> list[Any]:
        return self.values

    def merge(self, other: Accumulator) -> None:
        self.values.extend(other.get_local_value())


class RuntimeContext(KeyedStateStore):
    """What a rich function sees of its subtask (PyFlink's ``RuntimeContext``).

    Keyed state getters work only in functions applied to a ``KeyedStream``.
    """

    @abstractmethod
    def get_task_name(self) -> str: ...

    @abstractmethod
    def get_index_of_this_subtask(self) -> int: ...

    @abstractmethod
    def get_number_of_parallel_subtasks(self) -> int: ...

    @abstractmethod
    def get_max_number_of_parallel_subtasks(self) -> int: ...

    @abstractmethod
    def get_attempt_number(self) -> int:
        """0 on the first run, then +1 for each restart of the job."""

    @abstractmethod
    def add_accumulator(self, name: str, accumulator: Accumulator) -> None: ...

    @abstractmethod
    def get_accumulator(self, name: str) -> Accumulator: ...

    @abstractmethod
    def get_job_parameter(self, key: str, default: str | None = None) -> str | None: ...

    # Keyed state (inherited abstract methods from KeyedStateStore), restated for discoverability.
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


class FunctionInitializationContext(ABC):
    """Given to ``CheckpointedFunction.initialize_state``."""

    @abstractmethod
    def is_restored(self) -> bool:
        """True when the job resumes from a checkpoint or savepoint."""

    @abstractmethod
    def get_operator_state_store(self) -> OperatorStateStore: ...

    @abstractmethod
    def get_keyed_state_store(self) -> KeyedStateStore | None:
        """The keyed state store in a keyed context, else None."""


class FunctionSnapshotContext(ABC):
    """Given to ``CheckpointedFunction.snapshot_state``."""

    @abstractmethod
    def get_checkpoint_id(self) -> int: ...

    @abstractmethod
    def get_checkpoint_timestamp(self) -> int:
        """Milliseconds since the epoch at which the checkpoint was triggered."""
