"""Functions over two connected streams: co-map, co-flat-map, co-process (keyed or not), and
the broadcast state pattern (``BroadcastProcessFunction`` / ``KeyedBroadcastProcessFunction``).

Process-style methods yield their outputs (``yield output_tag, value`` for side outputs), as
everywhere in strom.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from strom.functions.base import Function, RichFunction
from strom.functions.core import KeyedProcessFunction, ProcessFunction
from strom.state import MapState, MapStateDescriptor

IN1 = TypeVar("IN1")
IN2 = TypeVar("IN2")
OUT = TypeVar("OUT")
K = TypeVar("K")


class CoMapFunction(Function, Generic[IN1, IN2, OUT]):
    @abstractmethod
    def map1(self, value: IN1) -> OUT: ...

    @abstractmethod
    def map2(self, value: IN2) -> OUT: ...


class CoFlatMapFunction(Function, Generic[IN1, IN2, OUT]):
    @abstractmethod
    def flat_map1(self, value: IN1) -> Iterable[OUT] | None: ...

    @abstractmethod
    def flat_map2(self, value: IN2) -> Iterable[OUT] | None: ...


class CoProcessFunction(RichFunction, Generic[IN1, IN2, OUT]):
    @abstractmethod
    def process_element1(
        self, value: IN1, ctx: ProcessFunction.Context
    ) -> Iterable[OUT] | None: ...

    @abstractmethod
    def process_element2(
        self, value: IN2, ctx: ProcessFunction.Context
    ) -> Iterable[OUT] | None: ...


class KeyedCoProcessFunction(RichFunction, Generic[K, IN1, IN2, OUT]):
    """Both inputs keyed the same way: keyed state and timers of the current key."""

    @abstractmethod
    def process_element1(
        self, value: IN1, ctx: KeyedProcessFunction.Context
    ) -> Iterable[OUT] | None: ...

    @abstractmethod
    def process_element2(
        self, value: IN2, ctx: KeyedProcessFunction.Context
    ) -> Iterable[OUT] | None: ...

    def on_timer(
        self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext
    ) -> Iterable[OUT] | None:
        return None


class BroadcastContext(ProcessFunction.Context):
    """Adds broadcast state: read-write on the broadcast side, read-only on the other."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> MapState[Any, Any]:
        raise NotImplementedError


class BroadcastProcessFunction(RichFunction, Generic[IN1, IN2, OUT]):
    """Element side (``process_element``) reads broadcast state; the broadcast side
    (``process_broadcast_element``, e.g. rules that change while the job runs) writes it.
    Broadcast state is checkpointed and restored on every subtask, at any parallelism."""

    @abstractmethod
    def process_element(self, value: IN1, ctx: BroadcastContext) -> Iterable[OUT] | None: ...

    @abstractmethod
    def process_broadcast_element(
        self, value: IN2, ctx: BroadcastContext
    ) -> Iterable[OUT] | None: ...


class KeyedBroadcastProcessFunction(RichFunction, Generic[K, IN1, IN2, OUT]):
    """As ``BroadcastProcessFunction`` on a keyed element stream: keyed state and timers on
    the element side."""

    @abstractmethod
    def process_element(self, value: IN1, ctx: BroadcastContext) -> Iterable[OUT] | None: ...

    @abstractmethod
    def process_broadcast_element(
        self, value: IN2, ctx: BroadcastContext
    ) -> Iterable[OUT] | None: ...

    def on_timer(self, timestamp: int, ctx: Any) -> Iterable[OUT] | None:
        return None
