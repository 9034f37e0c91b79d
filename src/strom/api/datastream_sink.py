"""``DataStreamSink``: the end of a stream, returned by ``sink_to``, ``add_sink`` and the
``print`` / ``write_*`` shortcuts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.api.environment import StreamExecutionEnvironment
    from strom.graph import Transformation

__all__ = ["DataStreamSink"]


class DataStreamSink:
    """The end of a stream; settings apply to the sink operator."""

    def __init__(self, env: StreamExecutionEnvironment, transformation: Transformation) -> None:
        self._env = env
        self._transformation = transformation

    def name(self, name: str) -> DataStreamSink:
        self._transformation.name = name
        return self

    def uid(self, uid: str) -> DataStreamSink:
        self._transformation.uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> DataStreamSink:
        from strom.api.datastream import DataStream

        DataStream(self._env, self._transformation).set_parallelism(parallelism)
        return self

    def disable_chaining(self) -> DataStreamSink:
        self._transformation.chaining = False
        return self
