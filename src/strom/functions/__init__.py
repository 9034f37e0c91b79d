"""User functions: transformation functions, source and sink functions, checkpoint hooks."""

from strom.functions.base import Function, RichFunction
from strom.functions.checkpoint import CheckpointedFunction, CheckpointListener
from strom.functions.context import (
    Accumulator,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    IntCounter,
    ListAccumulator,
    RuntimeContext,
)
from strom.functions.core import (
    AggregateFunction,
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    RichFilterFunction,
    RichFlatMapFunction,
    RichMapFunction,
    RichReduceFunction,
)
from strom.functions.sink import RichSinkFunction, SinkContext, SinkFunction
from strom.functions.source import (
    ParallelSourceFunction,
    RichParallelSourceFunction,
    RichSourceFunction,
    SourceCancelled,
    SourceContext,
    SourceFunction,
)

__all__ = [
    "Accumulator",
    "AggregateFunction",
    "CheckpointListener",
    "CheckpointedFunction",
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "FunctionInitializationContext",
    "FunctionSnapshotContext",
    "IntCounter",
    "KeySelector",
    "KeyedProcessFunction",
    "ListAccumulator",
    "MapFunction",
    "ParallelSourceFunction",
    "ProcessFunction",
    "ReduceFunction",
    "RichFilterFunction",
    "RichFlatMapFunction",
    "RichFunction",
    "RichMapFunction",
    "RichParallelSourceFunction",
    "RichReduceFunction",
    "RichSinkFunction",
    "RichSourceFunction",
    "RuntimeContext",
    "SinkContext",
    "SinkFunction",
    "SourceCancelled",
    "SourceContext",
    "SourceFunction",
]
