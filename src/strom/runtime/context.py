"""The runtime's implementations of the contexts user functions see."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from strom.errors import StateError
from strom.functions.context import (
    Accumulator,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    RuntimeContext,
)
from strom.metrics import MetricGroup
from strom.runtime.state import HeapKeyedStateBackend, OperatorStateBackend
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


class AccumulatorRegistry:
    """Accumulators of the whole job: one per (name, subtask), merged into the result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, list[Accumulator]] = {}

    def register(self, name: str, acc: Accumulator) -> None:
        with self._lock:
            self._by_name.setdefault(name, []).append(acc)

    def merged(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for name, accs in self._by_name.items():
                # a copy of the first, not type(acc)(): accumulators may take constructor args
                total = copy.deepcopy(accs[0])
                for a in accs[1:]:
                    total.merge(a)
                out[name] = total.get_local_value()
        return out


@dataclass
class OperatorContext:
    """Everything an operator subtask needs from the task that runs it."""

    job_name: str
    operator_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    attempt: int
    metrics: MetricGroup
    accumulators: AccumulatorRegistry
    processing_time: Callable[[], int]
    job_parameters: dict[str, str] = field(default_factory=dict)
    checkpointing: bool = False
    keyed_backend: HeapKeyedStateBackend | None = None
    operator_state: OperatorStateBackend = field(default_factory=OperatorStateBackend)
    current_watermark: Callable[[], int] = field(default=lambda: -(2**63))


class StreamingRuntimeContext(RuntimeContext):
    def __init__(self, ctx: OperatorContext) -> None:
        self._ctx = ctx
        self._local_accumulators: dict[str, Accumulator] = {}

    def _keyed(self) -> KeyedStateStore:
        backend = self._ctx.keyed_backend
        if backend is None:
            raise StateError(
                f"operator {self._ctx.operator_name!r}: keyed state is only available on a "
                "keyed stream (apply the function after key_by)"
            )
        return backend

    def get_task_name(self) -> str:
        return self._ctx.operator_name

    def get_index_of_this_subtask(self) -> int:
        return self._ctx.subtask_index

    def get_number_of_parallel_subtasks(self) -> int:
        return self._ctx.parallelism

    def get_max_number_of_parallel_subtasks(self) -> int:
        return self._ctx.max_parallelism

    def get_attempt_number(self) -> int:
        return self._ctx.attempt

    def add_accumulator(self, name: str, accumulator: Accumulator) -> None:
        if name in self._local_accumulators:
            raise StateError(f"accumulator {name!r} was already added in this subtask")
        self._local_accumulators[name] = accumulator
        self._ctx.accumulators.register(name, accumulator)

    def get_accumulator(self, name: str) -> Accumulator:
        try:
            return self._local_accumulators[name]
        except KeyError:
            raise StateError(f"no accumulator named {name!r} in this subtask") from None

    def get_job_parameter(self, key: str, default: str | None = None) -> str | None:
        return self._ctx.job_parameters.get(key, default)

    def get_metrics_group(self) -> MetricGroup:
        return self._ctx.metrics

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        return self._keyed().get_state(descriptor)

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return self._keyed().get_list_state(descriptor)

    def get_map_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]:
        return self._keyed().get_map_state(descriptor)

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        return self._keyed().get_reducing_state(descriptor)

    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[IN, object, OUT]
    ) -> AggregatingState[IN, OUT]:
        return self._keyed().get_aggregating_state(descriptor)


class InitializationContext(FunctionInitializationContext):
    def __init__(self, ctx: OperatorContext, restored: bool) -> None:
        self._ctx = ctx
        self._restored = restored

    def is_restored(self) -> bool:
        return self._restored

    def get_operator_state_store(self) -> OperatorStateStore:
        return self._ctx.operator_state

    def get_keyed_state_store(self) -> KeyedStateStore | None:
        return self._ctx.keyed_backend


class SnapshotContext(FunctionSnapshotContext):
    def __init__(self, checkpoint_id: int, timestamp: int) -> None:
        self._id = checkpoint_id
        self._ts = timestamp

    def get_checkpoint_id(self) -> int:
        return self._id

    def get_checkpoint_timestamp(self) -> int:
        return self._ts
