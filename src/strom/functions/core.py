"""Transformation functions: map, flat_map, filter, key selection, reduce, aggregate, process.

Every API method also accepts a plain callable in place of these classes. Generator-style
methods (``flat_map``, ``process_element``) follow PyFlink: they ``yield`` their outputs (or
return an iterable, or None for nothing).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strom.functions.base import Function, RichFunction

if TYPE_CHECKING:
    from strom.functions.context import RuntimeContext

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")
K = TypeVar("K")
ACC = TypeVar("ACC")


class MapFunction(Function, Generic[IN, OUT]):
    @abstractmethod
    def map(self, value: IN) -> OUT: ...


class FlatMapFunction(Function, Generic[IN, OUT]):
    @abstractmethod
    def flat_map(self, value: IN) -> Iterable[OUT] | None: ...


class FilterFunction(Function, Generic[T]):
    @abstractmethod
    def filter(self, value: T) -> bool: ...


class KeySelector(Function, Generic[T, K]):
    @abstractmethod
    def get_key(self, value: T) -> K: ...


class ReduceFunction(Function, Generic[T]):
    @abstractmethod
    def reduce(self, value1: T, value2: T) -> T: ...


class AggregateFunction(Function, Generic[IN, ACC, OUT]):
    """Incremental aggregation: the state holds the accumulator, never the elements."""

    @abstractmethod
    def create_accumulator(self) -> ACC: ...

    @abstractmethod
    def add(self, value: IN, accumulator: ACC) -> ACC: ...

    @abstractmethod
    def get_result(self, accumulator: ACC) -> OUT: ...

    @abstractmethod
    def merge(self, acc_a: ACC, acc_b: ACC) -> ACC: ...


class RichMapFunction(MapFunction[IN, OUT], RichFunction):
    pass


class RichFlatMapFunction(FlatMapFunction[IN, OUT], RichFunction):
    pass


class RichFilterFunction(FilterFunction[T], RichFunction):
    pass


class RichReduceFunction(ReduceFunction[T], RichFunction):
    pass


class OutputTag:
    """Names a side output: ``yield tag, value`` in a process function, then
    ``stream.get_side_output(tag)``."""

    def __init__(self, tag_id: str, type_info: Any = None) -> None:
        if not tag_id:
            raise ValueError("an OutputTag needs a non-empty id")
        self.tag_id = tag_id
        self.type_info = type_info

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTag) and other.tag_id == self.tag_id

    def __hash__(self) -> int:
        return hash(("OutputTag", self.tag_id))

    def __repr__(self) -> str:
        return f"OutputTag({self.tag_id!r})"


class TimeDomain(Enum):
    EVENT_TIME = "event_time"
    PROCESSING_TIME = "processing_time"


class TimerService(ABC):
    """Current times, and (on keyed streams) timers for the current key."""

    @abstractmethod
    def current_processing_time(self) -> int: ...

    @abstractmethod
    def current_watermark(self) -> int: ...

    @abstractmethod
    def register_event_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def register_processing_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def delete_event_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def delete_processing_time_timer(self, timestamp: int) -> None: ...


class ProcessFunction(RichFunction, Generic[IN, OUT]):
    """Lowest-level per-record function with access to the record's timestamp.

    Outputs are yielded; ``yield output_tag, value`` (an ``OutputTag`` first) sends a value to
    that side output instead (PyFlink's convention).
    """

    class Context:
        """What ``process_element`` gets besides the value (implemented by the runtime)."""

        def timestamp(self) -> int | None:
            raise NotImplementedError

        def current_processing_time(self) -> int:
            raise NotImplementedError

        def current_watermark(self) -> int:
            raise NotImplementedError

        def timer_service(self) -> TimerService:
            raise NotImplementedError

    @abstractmethod
    def process_element(self, value: IN, ctx: ProcessFunction.Context) -> Iterable[OUT] | None: ...


class KeyedProcessFunction(RichFunction, Generic[K, IN, OUT]):
    """A process function on a keyed stream: keyed state and timers of the current key."""

    class Context(ProcessFunction.Context):
        def get_current_key(self) -> Any:
            raise NotImplementedError

    class OnTimerContext(Context):
        def time_domain(self) -> TimeDomain:
            raise NotImplementedError

    @abstractmethod
    def process_element(
        self, value: IN, ctx: KeyedProcessFunction.Context
    ) -> Iterable[OUT] | None: ...

    def on_timer(
        self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext
    ) -> Iterable[OUT] | None:
        """A timer registered for ``ctx.get_current_key()`` fired at ``timestamp``."""
        return None


def describe(fn: object) -> str:
    """A short human name for a function or callable, used in operator names and errors."""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return str(name)


def is_rich(fn: object) -> bool:
    return isinstance(fn, RichFunction)


def open_function(fn: object, ctx: RuntimeContext) -> None:
    if isinstance(fn, RichFunction):
        fn.set_runtime_context(ctx)
    if isinstance(fn, Function):
        fn.open(ctx)


def close_function(fn: object) -> None:
    if isinstance(fn, Function):
        fn.close()
