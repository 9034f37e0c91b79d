"""Transformation functions: map, flat_map, filter, key selection, reduce, aggregate, process.

Every API method also accepts a plain callable in place of these classes. Generator-style
methods (``flat_map``, ``process_element``) follow PyFlink: they ``yield`` their outputs (or
return an iterable, or None for nothing).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
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


class ProcessFunction(RichFunction, Generic[IN, OUT]):
    """Lowest-level per-record function with access to the record's timestamp."""

    class Context:
        """What ``process_element`` gets besides the value (implemented by the runtime)."""

        def timestamp(self) -> int | None:
            raise NotImplementedError

        def current_processing_time(self) -> int:
            raise NotImplementedError

        def current_watermark(self) -> int:
            raise NotImplementedError

    @abstractmethod
    def process_element(self, value: IN, ctx: ProcessFunction.Context) -> Iterable[OUT] | None: ...


class KeyedProcessFunction(RichFunction, Generic[K, IN, OUT]):
    """A process function on a keyed stream: keyed state of the current key is available."""

    class Context(ProcessFunction.Context):
        def get_current_key(self) -> Any:
            raise NotImplementedError

    @abstractmethod
    def process_element(
        self, value: IN, ctx: KeyedProcessFunction.Context
    ) -> Iterable[OUT] | None: ...


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
