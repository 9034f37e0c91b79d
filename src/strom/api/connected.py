"""Two streams processed together: ``a.connect(b)`` (co-map / co-flat-map / co-process, keyed
with ``key_by``) and the broadcast state pattern ``events.connect(rules.broadcast(desc))``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strom.errors import InvalidJobError
from strom.functions.co import (
    BroadcastProcessFunction,
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
)
from strom.graph import PartitionTransformation, PhysicalTransformation, Transformation
from strom.graph.transformations import per_subtask_copy
from strom.runtime.operators.co import CoProcessOperator, KeyedCoProcessOperator
from strom.runtime.operators.keyed import key_function
from strom.runtime.partitioners import KeyGroupPartitioner
from strom.state import MapStateDescriptor

if TYPE_CHECKING:
    from strom.api.datastream import DataStream
    from strom.api.environment import StreamExecutionEnvironment


def _two_input(
    env: StreamExecutionEnvironment,
    name: str,
    first: Transformation,
    second: Transformation,
    factory: Any,
    keyed: bool,
) -> DataStream:
    from strom.api.datastream import DataStream

    t = PhysicalTransformation(
        id=env._new_id(),
        name=name,
        inputs=[first, second],
        factory=factory,
        keyed=keyed,
        two_inputs=True,
    )
    env._register(t)
    return DataStream(env, t)


def _keyed_input(env: StreamExecutionEnvironment, t: Transformation, key: Any) -> Transformation:
    selector = key_function(key)
    return PartitionTransformation(
        id=env._new_id(),
        name="KeyBy",
        inputs=[t],
        partitioner=lambda maxp: KeyGroupPartitioner(selector, maxp),
        partitioner_name="hash",
    )


class ConnectedStreams:
    def __init__(
        self,
        first: DataStream,
        second: DataStream,
        keys: tuple[Any, Any] | None = None,
    ) -> None:
        if first._env is not second._env:
            raise InvalidJobError("connect() needs streams of the same environment")
        self._env = first._env
        self._first = first
        self._second = second
        self._keys = keys

    def key_by(self, key_selector1: Any, key_selector2: Any) -> ConnectedStreams:
        """Partition both inputs by key, so records with equal keys meet in one subtask."""
        return ConnectedStreams(self._first, self._second, (key_selector1, key_selector2))

    def _inputs(self) -> tuple[Transformation, Transformation]:
        a, b = self._first._transformation, self._second._transformation
        if self._keys is None:
            return a, b
        return _keyed_input(self._env, a, self._keys[0]), _keyed_input(self._env, b, self._keys[1])

    def _build(self, name: str, fn: Any) -> DataStream:
        a, b = self._inputs()
        if self._keys is not None:
            k1, k2 = self._keys
            return _two_input(
                self._env,
                name,
                a,
                b,
                lambda n: KeyedCoProcessOperator(n, per_subtask_copy(fn), k1, k2),
                keyed=True,
            )
        if isinstance(fn, KeyedCoProcessFunction):
            raise InvalidJobError(
                "a KeyedCoProcessFunction needs key_by(...) on the connected streams"
            )
        return _two_input(
            self._env, name, a, b, lambda n: CoProcessOperator(n, per_subtask_copy(fn)), keyed=False
        )

    def map(self, func: CoMapFunction[Any, Any, Any]) -> DataStream:
        if not isinstance(func, CoMapFunction):
            raise InvalidJobError(f"map on connected streams expects a CoMapFunction, got {func!r}")
        return self._build("CoMap", func)

    def flat_map(self, func: CoFlatMapFunction[Any, Any, Any]) -> DataStream:
        if not isinstance(func, CoFlatMapFunction):
            raise InvalidJobError(f"flat_map expects a CoFlatMapFunction, got {func!r}")
        return self._build("CoFlatMap", func)

    def process(
        self, func: CoProcessFunction[Any, Any, Any] | KeyedCoProcessFunction[Any, Any, Any, Any]
    ) -> DataStream:
        if not isinstance(func, CoProcessFunction | KeyedCoProcessFunction):
            raise InvalidJobError(f"process expects a (Keyed)CoProcessFunction, got {func!r}")
        return self._build("CoProcess", func)


class BroadcastStream:
    """A stream sent to every subtask, with the broadcast state descriptors it fills."""

    def __init__(
        self, stream: DataStream, descriptors: tuple[MapStateDescriptor[Any, Any], ...]
    ) -> None:
        for d in descriptors:
            if not isinstance(d, MapStateDescriptor):
                raise InvalidJobError(f"broadcast state needs MapStateDescriptors, got {d!r}")
        self.stream = stream.broadcast()
        self.descriptors = descriptors


class BroadcastConnectedStream:
    def __init__(self, events: DataStream, broadcast: BroadcastStream) -> None:
        if events._env is not broadcast.stream._env:
            raise InvalidJobError("connect() needs streams of the same environment")
        self._events = events
        self._broadcast = broadcast

    def process(
        self,
        func: BroadcastProcessFunction[Any, Any, Any]
        | KeyedBroadcastProcessFunction[Any, Any, Any, Any],
    ) -> DataStream:
        from strom.api.datastream import KeyedStream

        env = self._events._env
        events, rules = self._events, self._broadcast.stream._transformation
        if isinstance(func, KeyedBroadcastProcessFunction):
            if not isinstance(events, KeyedStream):
                raise InvalidJobError(
                    "a KeyedBroadcastProcessFunction needs a keyed element stream (key_by first)"
                )
            key = events._key_selector
            return _two_input(
                env,
                "KeyedBroadcastProcess",
                events._transformation,
                rules,
                lambda n: KeyedCoProcessOperator(n, per_subtask_copy(func), key, None),
                keyed=True,
            )
        if not isinstance(func, BroadcastProcessFunction):
            raise InvalidJobError(
                f"process expects a (Keyed)BroadcastProcessFunction, got {func!r}"
            )
        if isinstance(events, KeyedStream):
            raise InvalidJobError("a keyed element stream needs a KeyedBroadcastProcessFunction")
        return _two_input(
            env,
            "BroadcastProcess",
            events._transformation,
            rules,
            lambda n: CoProcessOperator(n, per_subtask_copy(func)),
            keyed=False,
        )
