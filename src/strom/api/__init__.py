"""The DataStream API: ``StreamExecutionEnvironment``, ``DataStream``, ``KeyedStream``.

Methods build transformations (``strom.graph``); ``execute`` translates them into a job graph
and hands it to the executor (``strom.runtime``).
"""

from strom.api.collect import CloseableIterator
from strom.api.datastream import DataStream, DataStreamSink, KeyedStream
from strom.api.environment import StreamExecutionEnvironment

__all__ = [
    "CloseableIterator",
    "DataStream",
    "DataStreamSink",
    "KeyedStream",
    "StreamExecutionEnvironment",
]
