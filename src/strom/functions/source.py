"""The push-style source API (seed §3.1–3.3): ``run(ctx)`` emits until done or cancelled.

Built-in connectors use the pull-based contract of ``strom.connectors.base`` instead; this API
is for users porting Flink ``SourceFunction`` code. The runtime runs ``run`` in the subtask's
thread and gives it a checkpoint lock: emit and advance your position while holding it, and a
snapshot never sees one without the other::

    def run(self, ctx):
        while self.running and self.offset < self.end:
            with ctx.get_checkpoint_lock():
                ctx.collect(self.offset)
                self.offset += 1

``cancel()`` is called from another thread; ``ctx.collect`` also raises ``SourceCancelled``
once the job is cancelled, so a loop that keeps collecting stops even if it ignores ``cancel``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from strom.functions.base import Function, RichFunction

T = TypeVar("T")


class SourceCancelled(Exception):
    """Raised inside ``run`` by ``ctx.collect`` after the job was cancelled."""


class SourceContext(ABC, Generic[T]):
    """How a ``SourceFunction`` emits (implemented by the runtime)."""

    @abstractmethod
    def collect(self, element: T) -> None: ...

    @abstractmethod
    def collect_with_timestamp(self, element: T, timestamp: int) -> None:
        """Emit with an event-time timestamp (milliseconds since the epoch)."""

    @abstractmethod
    def emit_watermark(self, watermark: int) -> None:
        """Declare that no element with a timestamp <= ``watermark`` follows."""

    @abstractmethod
    def mark_as_temporarily_idle(self) -> None:
        """This source emits nothing for now: downstream watermarks must not wait for it."""

    @abstractmethod
    def get_checkpoint_lock(self) -> threading.RLock | Any: ...

    @abstractmethod
    def is_cancelled(self) -> bool: ...


class SourceFunction(Function, Generic[T]):
    """A non-parallel source (parallelism 1)."""

    @abstractmethod
    def run(self, ctx: SourceContext[T]) -> None: ...

    @abstractmethod
    def cancel(self) -> None:
        """Make ``run`` return soon. Called from another thread."""


class ParallelSourceFunction(SourceFunction[T]):
    """A source that runs as several subtasks; split the work by subtask index."""


class RichSourceFunction(SourceFunction[T], RichFunction):
    pass


class RichParallelSourceFunction(ParallelSourceFunction[T], RichFunction):
    """A parallel source with ``open``/``close`` and ``get_runtime_context()`` (subtask index,
    parallelism)."""
