"""Window functions: ``ProcessWindowFunction`` sees a window's contents (or its pre-aggregated
result) with the window's metadata; ``WindowFunction`` is the simpler legacy form."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from strom.functions.base import RichFunction
from strom.windowing.windows import Window

IN = TypeVar("IN")
OUT = TypeVar("OUT")
K = TypeVar("K")


class ProcessWindowFunction(RichFunction, Generic[IN, OUT, K]):
    class Context:
        def window(self) -> Window:
            raise NotImplementedError

        def current_processing_time(self) -> int:
            raise NotImplementedError

        def current_watermark(self) -> int:
            raise NotImplementedError

    @abstractmethod
    def process(
        self, key: K, context: ProcessWindowFunction.Context, elements: Iterable[IN]
    ) -> Iterable[OUT] | None: ...


class WindowFunction(RichFunction, Generic[IN, OUT, K]):
    @abstractmethod
    def apply(self, key: K, window: Window, inputs: Iterable[IN]) -> Iterable[OUT] | None: ...


def as_process_function(fn: Any) -> Any:
    """A ``WindowFunction`` or a plain callable ``(key, window, elements)`` as a process
    function ``(key, context, elements)``."""
    if isinstance(fn, ProcessWindowFunction):
        return fn
    apply = fn.apply if isinstance(fn, WindowFunction) else fn

    class _Adapter(ProcessWindowFunction[Any, Any, Any]):
        inner = fn

        def open(self, runtime_context: Any) -> None:
            if isinstance(self.inner, RichFunction):
                self.inner.open(runtime_context)

        def close(self) -> None:
            if isinstance(self.inner, RichFunction):
                self.inner.close()

        def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Any:
            return apply(key, context.window(), elements)

    return _Adapter()
