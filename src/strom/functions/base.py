"""The base of every user function: optional ``open``/``close`` around its life in a subtask."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.functions.context import RuntimeContext


class Function:
    """Base class of all function classes. ``open`` runs once per subtask before any record,
    ``close`` once after the last (also on failure and cancellation)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        """Set up per-subtask resources and obtain state."""

    def close(self) -> None:
        """Release what ``open`` acquired."""


class RichFunction(Function):
    """A function that keeps its runtime context (``get_runtime_context()``), as in Flink."""

    _runtime_context: RuntimeContext | None = None

    def set_runtime_context(self, runtime_context: RuntimeContext) -> None:
        self._runtime_context = runtime_context

    def get_runtime_context(self) -> RuntimeContext:
        if self._runtime_context is None:
            raise RuntimeError(
                f"{type(self).__name__}: the runtime context is available only once the "
                "function runs in a subtask (from open() on)"
            )
        return self._runtime_context
