"""The per-record sink API (seed §3.4): ``invoke(value, context)``.

For fault tolerance implement ``CheckpointedFunction`` too: keep what is not yet durably written
in operator state in ``snapshot_state`` and take it back in ``initialize_state``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Generic, TypeVar

from strom.functions.base import Function, RichFunction

T = TypeVar("T")


class SinkContext:
    """What ``invoke`` gets besides the value (implemented by the runtime)."""

    def current_processing_time(self) -> int:
        raise NotImplementedError

    def current_watermark(self) -> int:
        raise NotImplementedError

    def timestamp(self) -> int | None:
        raise NotImplementedError


class SinkFunction(Function, Generic[T]):
    @abstractmethod
    def invoke(self, value: T, context: SinkContext) -> None: ...

    def finish(self) -> None:
        """Called once after the last record of a finite input, before ``close``."""


class RichSinkFunction(SinkFunction[T], RichFunction):
    pass
