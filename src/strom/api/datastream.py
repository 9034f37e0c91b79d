"""``DataStream``: transformations with PyFlink's names.

Every method returns a new stream backed by a new transformation; nothing runs until the
environment executes. Functions may be plain callables or function classes. ``key_by`` gives a
``KeyedStream`` (``keyed_stream.py``), a sink a ``DataStreamSink`` (``datastream_sink.py``);
both are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from strom.api.datastream_sink import DataStreamSink
from strom.connectors.base import Sink
from strom.errors import InvalidJobError
from strom.eventtime import WatermarkStrategy
from strom.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    OutputTag,
    ProcessFunction,
    SinkFunction,
)
from strom.functions.core import describe
from strom.graph import (
    PartitionTransformation,
    PhysicalTransformation,
    SideOutputTransformation,
    Transformation,
    UnionTransformation,
)
from strom.graph.transformations import per_subtask_copy
from strom.runtime.operators.keyed import key_function
from strom.runtime.operators.simple import (
    FilterOperator,
    FlatMapOperator,
    MapOperator,
    ProcessOperator,
)
from strom.runtime.operators.sinks import SinkFunctionOperator, SinkWriterOperator
from strom.runtime.operators.timestamps import TimestampsAndWatermarksOperator
from strom.runtime.partitioners import (
    BroadcastPartitioner,
    CustomPartitioner,
    ForwardPartitioner,
    GlobalPartitioner,
    KeyGroupPartitioner,
    Partitioner,
    RebalancePartitioner,
    ShufflePartitioner,
)
from strom.state import MapStateDescriptor

if TYPE_CHECKING:
    from strom.api.collect import CloseableIterator
    from strom.api.connected import BroadcastStream
    from strom.api.environment import StreamExecutionEnvironment
    from strom.formats import SerializationSchema


def _require(fn: Any, method: str, what: str) -> None:
    if not (callable(fn) or callable(getattr(fn, method, None))):
        raise InvalidJobError(
            f"{what} expects a callable or an object with .{method}(), got {fn!r}"
        )


class DataStream:
    """A stream of records (PyFlink's ``DataStream``)."""

    def __init__(self, env: StreamExecutionEnvironment, transformation: Transformation) -> None:
        self._env = env
        self._transformation = transformation

    # -- properties of this stream's operator ----------------------------------------------
    def _physical(self, what: str) -> PhysicalTransformation:
        t = self._transformation
        if not isinstance(t, PhysicalTransformation):
            raise InvalidJobError(
                f"{what} applies to an operator; {type(t).__name__} ({t.name!r}) is not one"
            )
        return t

    def name(self, name: str) -> DataStream:
        if not name:
            raise InvalidJobError("operator name must not be empty")
        self._transformation.name = name
        return self

    def get_name(self) -> str:
        return self._transformation.name

    def uid(self, uid: str) -> DataStream:
        """A stable id that matches this operator's state across job versions (savepoints)."""
        if not uid:
            raise InvalidJobError("uid must not be empty")
        self._physical("uid").uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> DataStream:
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
            raise InvalidJobError(f"parallelism must be a positive integer, got {parallelism!r}")
        t = self._physical("set_parallelism")
        if t.parallelism_limit is not None and parallelism > t.parallelism_limit:
            raise InvalidJobError(
                f"operator {t.name!r} supports at most {t.parallelism_limit} subtask(s); "
                f"cannot set parallelism {parallelism}"
            )
        t.parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        p = self._transformation.parallelism
        return p if p is not None else self._env.get_parallelism()

    def set_max_parallelism(self, max_parallelism: int) -> DataStream:
        self._physical("set_max_parallelism").max_parallelism = max_parallelism
        return self

    def disable_chaining(self) -> DataStream:
        self._physical("disable_chaining").chaining = False
        return self

    # -- transformations ------------------------------------------------------------------
    def _apply(
        self, name: str, factory: Callable[[str], Any], *, keyed: bool = False
    ) -> PhysicalTransformation:
        t = PhysicalTransformation(
            id=self._env._new_id(),
            name=name,
            inputs=[self._transformation],
            factory=factory,
            keyed=keyed,
        )
        self._env._register(t)
        return t

    def map(self, func: MapFunction[Any, Any] | Callable[[Any], Any]) -> DataStream:
        _require(func, "map", "map")
        return DataStream(
            self._env, self._apply("Map", lambda n: MapOperator(n, per_subtask_copy(func)))
        )

    def flat_map(self, func: FlatMapFunction[Any, Any] | Callable[[Any], Any]) -> DataStream:
        _require(func, "flat_map", "flat_map")
        return DataStream(
            self._env,
            self._apply("FlatMap", lambda n: FlatMapOperator(n, per_subtask_copy(func))),
        )

    def filter(self, func: FilterFunction[Any] | Callable[[Any], bool]) -> DataStream:
        _require(func, "filter", "filter")
        return DataStream(
            self._env, self._apply("Filter", lambda n: FilterOperator(n, per_subtask_copy(func)))
        )

    def process(self, func: ProcessFunction[Any, Any] | Callable[..., Any]) -> DataStream:
        if isinstance(func, KeyedProcessFunction):
            raise InvalidJobError("a KeyedProcessFunction needs a keyed stream: call key_by first")
        _require(func, "process_element", "process")
        return DataStream(
            self._env,
            self._apply("Process", lambda n: ProcessOperator(n, per_subtask_copy(func))),
        )

    def key_by(self, key_selector: KeySelector[Any, Any] | Callable[[Any], Any]) -> KeyedStream:
        _require(key_selector, "get_key", "key_by")
        key = key_function(key_selector)
        t = PartitionTransformation(
            id=self._env._new_id(),
            name="KeyBy",
            inputs=[self._transformation],
            partitioner=lambda maxp: KeyGroupPartitioner(key, maxp),
            partitioner_name="hash",
        )
        return KeyedStream(self._env, t, key_selector)

    def assign_timestamps_and_watermarks(self, watermark_strategy: WatermarkStrategy) -> DataStream:
        """Event timestamps and watermarks from here on (upstream ones are replaced)."""
        if not isinstance(watermark_strategy, WatermarkStrategy):
            raise InvalidJobError(f"expected a WatermarkStrategy, got {watermark_strategy!r}")
        interval = self._env._config.auto_watermark_interval_ms
        t = self._apply(
            "Timestamps/Watermarks",
            lambda n: TimestampsAndWatermarksOperator(n, watermark_strategy, interval),
        )
        t.watermark_strategy = watermark_strategy
        return DataStream(self._env, t)

    def get_side_output(self, output_tag: OutputTag) -> DataStream:
        """The records this operator sent to ``output_tag`` (``yield output_tag, value`` in a
        process function, or late records of a window)."""
        if not isinstance(output_tag, OutputTag):
            raise InvalidJobError(f"get_side_output expects an OutputTag, got {output_tag!r}")
        source = self._physical("get_side_output")
        t = SideOutputTransformation(
            id=self._env._new_id(),
            name=f"SideOutput({output_tag.tag_id})",
            inputs=[source],
            tag_id=output_tag.tag_id,
        )
        return DataStream(self._env, t)

    def union(self, *streams: DataStream) -> DataStream:
        for s in streams:
            if s._env is not self._env:
                raise InvalidJobError("union() needs streams of the same environment")
        t = UnionTransformation(
            id=self._env._new_id(),
            name="Union",
            inputs=[self._transformation, *(s._transformation for s in streams)],
        )
        return DataStream(self._env, t)

    # -- partitioning ---------------------------------------------------------------------
    def _partition(self, name: str, factory: Callable[[int], Partitioner]) -> DataStream:
        t = PartitionTransformation(
            id=self._env._new_id(),
            name=name,
            inputs=[self._transformation],
            partitioner=factory,
            partitioner_name=name,
        )
        return DataStream(self._env, t)

    def forward(self) -> DataStream:
        return self._partition("forward", lambda _: ForwardPartitioner())

    def rebalance(self) -> DataStream:
        return self._partition("rebalance", lambda _: RebalancePartitioner())

    def shuffle(self) -> DataStream:
        return self._partition("shuffle", lambda _: ShufflePartitioner())

    @overload
    def broadcast(self) -> DataStream: ...

    @overload
    def broadcast(self, *descriptors: MapStateDescriptor[Any, Any]) -> BroadcastStream: ...

    def broadcast(self, *descriptors: MapStateDescriptor[Any, Any]) -> DataStream | BroadcastStream:
        """Every record to every subtask; with state descriptors, a ``BroadcastStream`` for
        the broadcast state pattern (``events.connect(rules.broadcast(desc)).process(...)``)."""
        if descriptors:
            from strom.api.connected import BroadcastStream

            return BroadcastStream(self, descriptors)
        return self._partition("broadcast", lambda _: BroadcastPartitioner())

    def connect(self, other: DataStream | BroadcastStream) -> Any:
        """Two streams processed together (``ConnectedStreams``), or with a broadcast stream
        (``BroadcastConnectedStream``)."""
        from strom.api.connected import (
            BroadcastConnectedStream,
            BroadcastStream,
            ConnectedStreams,
        )

        if isinstance(other, BroadcastStream):
            return BroadcastConnectedStream(self, other)
        if not isinstance(other, DataStream):
            raise InvalidJobError(
                f"connect() expects a DataStream or BroadcastStream, got {other!r}"
            )
        return ConnectedStreams(self, other)

    def global_(self) -> DataStream:
        return self._partition("global", lambda _: GlobalPartitioner())

    def partition_custom(
        self,
        partitioner: Callable[[Any, int], int],
        key_selector: KeySelector[Any, Any] | Callable[[Any], Any],
    ) -> DataStream:
        """``partitioner(key, num_partitions)`` returns the target subtask of each record."""
        _require(key_selector, "get_key", "partition_custom")
        key = key_function(key_selector)
        return self._partition("custom", lambda _: CustomPartitioner(partitioner, key))

    # -- sinks ----------------------------------------------------------------------------
    def sink_to(self, sink: Sink[Any]) -> DataStreamSink:
        """Write with a built-in (batch) ``Sink``."""
        if not isinstance(sink, Sink):
            raise InvalidJobError(
                f"sink_to expects a strom.connectors.base.Sink, got {type(sink).__name__}; "
                "use add_sink() for a SinkFunction"
            )
        t = PhysicalTransformation(
            id=self._env._new_id(),
            name=sink.describe(),
            inputs=[self._transformation],
            factory=lambda n: SinkWriterOperator(n, sink),
            parallelism_limit=sink.max_parallelism,
        )
        self._env._register_sink(t)
        return DataStreamSink(self._env, t)

    def add_sink(self, sink_func: SinkFunction[Any] | Callable[..., Any]) -> DataStreamSink:
        """Write with a per-record ``SinkFunction`` (seed §3.4)."""
        if not isinstance(sink_func, SinkFunction):
            raise InvalidJobError(
                f"add_sink expects a SinkFunction, got {type(sink_func).__name__}; "
                "wrap a callable as strom.functions.SinkFunction or use sink_to()"
            )
        t = PhysicalTransformation(
            id=self._env._new_id(),
            name=f"Sink: {describe(sink_func)}",
            inputs=[self._transformation],
            factory=lambda n: SinkFunctionOperator(n, per_subtask_copy(sink_func)),
        )
        self._env._register_sink(t)
        return DataStreamSink(self._env, t)

    def print(
        self, sink_identifier: str | None = None, *, sample: float | None = None
    ) -> DataStreamSink:
        """Print records to stdout, prefixed ``N> `` (subtask) when parallelism > 1.

        ``sample`` (0 < sample <= 1) prints only that fraction of records — printing every
        record is for development; in production use ``log()`` or sampling (seed §2.1).
        """
        from strom.connectors.console import PrintSink

        return self.sink_to(PrintSink(sink_identifier, sample=sample)).name("Print to Std. Out")

    def print_to_err(self, sink_identifier: str | None = None) -> DataStreamSink:
        from strom.connectors.console import PrintSink

        return self.sink_to(PrintSink(sink_identifier, stderr=True)).name("Print to Std. Err")

    def log(
        self, logger: str = "strom.sink", level: int | str = "INFO", *, sample: float | None = None
    ) -> DataStreamSink:
        """Log records through ``logging`` (optionally sampled): print's production variant."""
        from strom.connectors.console import LoggingSink

        return self.sink_to(LoggingSink(logger, level=level, sample=sample)).name("Log")

    def write_as_text(self, path: str, write_mode: Any = None) -> DataStreamSink:
        """One line per record (``str(record)``); a directory of files "1".."n" when the sink
        runs with parallelism > 1. At-least-once: flushed on checkpoints."""
        from strom.connectors.file import TextSink, WriteMode

        return self.sink_to(TextSink(path, write_mode=write_mode or WriteMode.NO_OVERWRITE))

    def write_as_csv(
        self,
        path: str,
        write_mode: Any = None,
        row_delimiter: str = "\n",
        field_delimiter: str = ",",
    ) -> DataStreamSink:
        """Tuples, lists or dicts as CSV rows. At-least-once: flushed on checkpoints."""
        from strom.connectors.file import CsvSink, WriteMode

        return self.sink_to(
            CsvSink(
                path,
                write_mode=write_mode or WriteMode.NO_OVERWRITE,
                row_delimiter=row_delimiter,
                field_delimiter=field_delimiter,
            )
        )

    def write_to_socket(
        self, host: str, port: int, serialization_schema: SerializationSchema[Any]
    ) -> DataStreamSink:
        """Send serialized records to a TCP server; reconnects on failure (at-least-once)."""
        from strom.connectors.socket import SocketSink

        return self.sink_to(SocketSink(host, port, serialization_schema))

    def execute_and_collect(
        self, job_execution_name: str | None = None, limit: int | None = None
    ) -> CloseableIterator[Any] | list[Any]:
        """Run the job and iterate its results here (PyFlink's ``execute_and_collect``).

        With ``limit`` the first ``limit`` records are returned as a list and the job is
        cancelled; otherwise a ``CloseableIterator`` (use it in a ``with`` block).
        """
        it = self._env._execute_and_collect(self, job_execution_name or "collect")
        if limit is None:
            return it
        out: list[Any] = []
        with it:
            for record in it:
                out.append(record)
                if len(out) >= limit:
                    break
        return out


# KeyedStream extends DataStream, so it is defined after it; importing it here keeps
# ``from strom.api.datastream import KeyedStream`` working (and gives key_by its class).
from strom.api.keyed_stream import KeyedStream  # noqa: E402

__all__ = ["DataStream", "DataStreamSink", "KeyedStream"]
