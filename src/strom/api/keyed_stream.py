"""``KeyedStream``: a stream partitioned by key, whose operators may use keyed state."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strom.api.datastream import DataStream, _require
from strom.errors import InvalidJobError
from strom.functions import KeyedProcessFunction, ReduceFunction
from strom.graph import PartitionTransformation
from strom.graph.transformations import per_subtask_copy
from strom.runtime.operators.keyed import (
    KeyedProcessOperator,
    KeyedReduceOperator,
    field_aggregation,
)
from strom.windowing import CountTrigger, GlobalWindows, PurgingTrigger, WindowAssigner

if TYPE_CHECKING:
    from strom.api.environment import StreamExecutionEnvironment
    from strom.api.windowed import WindowedStream

__all__ = ["KeyedStream"]


class _KeyedAdapter(KeyedProcessFunction[Any, Any, Any]):
    """Runs a map / flat_map / filter function with the keyed context set (keyed state)."""

    def __init__(self, fn: Any, kind: str) -> None:
        self.fn = fn
        self.kind = kind

    def open(self, runtime_context: Any) -> None:
        from strom.functions.core import open_function

        open_function(self.fn, runtime_context)
        fn = self.fn
        method = {"map": "map", "flat_map": "flat_map", "filter": "filter"}[self.kind]
        self._call = getattr(fn, method) if hasattr(fn, method) and not _plain(fn) else fn

    def close(self) -> None:
        from strom.functions.core import close_function

        close_function(self.fn)

    def process_element(self, value: Any, ctx: Any) -> Any:
        if self.kind == "map":
            return (self._call(value),)
        if self.kind == "filter":
            return (value,) if self._call(value) else None
        return self._call(value)


def _plain(fn: Any) -> bool:
    return getattr(fn, "__code__", None) is not None


class KeyedStream(DataStream):
    """A stream partitioned by key; operators on it may use keyed state."""

    def __init__(
        self,
        env: StreamExecutionEnvironment,
        transformation: PartitionTransformation,
        key_selector: Any,
    ) -> None:
        super().__init__(env, transformation)
        self._key_selector = key_selector

    def _keyed(self, name: str, factory: Callable[[str], Any]) -> DataStream:
        return DataStream(self._env, self._apply(name, factory, keyed=True))

    def reduce(self, func: ReduceFunction[Any] | Callable[[Any, Any], Any]) -> DataStream:
        """Rolling reduce per key: emits the updated value for every record."""
        _require(func, "reduce", "reduce")
        key = self._key_selector
        return self._keyed("Reduce", lambda n: KeyedReduceOperator(n, per_subtask_copy(func), key))

    def _aggregate(self, kind: str, field: int | str | None) -> DataStream:
        fn = field_aggregation(kind, field)
        key = self._key_selector
        return self._keyed(kind.capitalize(), lambda n: KeyedReduceOperator(n, fn, key))

    def sum(self, position_to_sum: int | str | None = None) -> DataStream:
        """Rolling sum of a field (tuple index or dict key; None: the record itself)."""
        return self._aggregate("sum", position_to_sum)

    def min(self, position_to_min: int | str | None = None) -> DataStream:
        return self._aggregate("min", position_to_min)

    def max(self, position_to_max: int | str | None = None) -> DataStream:
        return self._aggregate("max", position_to_max)

    def min_by(self, position_to_min_by: int | str | None = None) -> DataStream:
        return self._aggregate("min_by", position_to_min_by)

    def max_by(self, position_to_max_by: int | str | None = None) -> DataStream:
        return self._aggregate("max_by", position_to_max_by)

    def process(self, func: Any) -> DataStream:
        _require(func, "process_element", "process")
        key = self._key_selector
        return self._keyed(
            "KeyedProcess", lambda n: KeyedProcessOperator(n, per_subtask_copy(func), key)
        )

    def map(self, func: Any) -> DataStream:
        _require(func, "map", "map")
        return self._keyed_adapted("Map", func, "map")

    def flat_map(self, func: Any) -> DataStream:
        _require(func, "flat_map", "flat_map")
        return self._keyed_adapted("FlatMap", func, "flat_map")

    def filter(self, func: Any) -> DataStream:
        _require(func, "filter", "filter")
        return self._keyed_adapted("Filter", func, "filter")

    def _keyed_adapted(self, name: str, func: Any, kind: str) -> DataStream:
        key = self._key_selector
        return self._keyed(
            name,
            lambda n: KeyedProcessOperator(n, _KeyedAdapter(per_subtask_copy(func), kind), key),
        )

    def set_parallelism(self, parallelism: int) -> DataStream:
        raise InvalidJobError("set the parallelism on the operator after key_by, not on key_by")

    def window(self, window_assigner: WindowAssigner) -> WindowedStream:
        """Cut each key's records into windows (tumbling, sliding, session, global)."""
        from strom.api.windowed import WindowedStream

        return WindowedStream(self, window_assigner)

    def count_window(self, size: int) -> WindowedStream:
        """Windows of ``size`` records per key (global window, purging count trigger)."""
        if not isinstance(size, int) or size < 1:
            raise InvalidJobError(f"count window size must be a positive integer, got {size!r}")
        return self.window(GlobalWindows.create()).trigger(PurgingTrigger.of(CountTrigger.of(size)))
