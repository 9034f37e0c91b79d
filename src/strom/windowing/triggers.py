"""Triggers decide when a window's result is emitted (FIRE) and its contents dropped (PURGE).

``TriggerContext`` is implemented by the window operator: timers for the current key and
window, current times, and per-(key, window) state for the trigger's own bookkeeping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

from strom.errors import InvalidJobError
from strom.eventtime import Duration, to_millis
from strom.windowing.windows import Window


class TriggerResult(Enum):
    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    @property
    def is_fire(self) -> bool:
        return self.value[0]

    @property
    def is_purge(self) -> bool:
        return self.value[1]


class TriggerContext(ABC):
    @abstractmethod
    def current_watermark(self) -> int: ...

    @abstractmethod
    def current_processing_time(self) -> int: ...

    @abstractmethod
    def register_event_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def register_processing_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def delete_event_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def delete_processing_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def get_state(self, name: str, default: Any = None) -> Any:
        """The trigger's own value for the current key and window."""

    @abstractmethod
    def set_state(self, name: str, value: Any) -> None: ...


class Trigger(ABC):
    @abstractmethod
    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult: ...

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def clear(self, window: Window, ctx: TriggerContext) -> None:  # noqa: B027 - optional hook
        """The window is gone: drop timers and state the trigger registered for it."""

    def can_merge(self) -> bool:
        return False

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        raise InvalidJobError(f"{type(self).__name__} does not support merging windows")


class EventTimeTrigger(Trigger):
    """Fires when the watermark passes the window's end (and again for each late record
    within the allowed lateness)."""

    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        if window.max_timestamp() <= ctx.current_watermark():
            return TriggerResult.FIRE  # late but within lateness: update the result
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        if window.max_timestamp() > ctx.current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())


class ProcessingTimeTrigger(Trigger):
    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp())

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        ctx.register_processing_time_timer(window.max_timestamp())


class NeverTrigger(Trigger):
    """The global window's default: never fires by itself."""

    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        return TriggerResult.CONTINUE


class CountTrigger(Trigger):
    """Fires once ``count`` records arrived in the window (then counts from zero again)."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise InvalidJobError(f"count trigger needs a count >= 1, got {count}")
        self.count = count

    @staticmethod
    def of(count: int) -> CountTrigger:
        return CountTrigger(count)

    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        n = ctx.get_state("count", 0) + 1
        if n >= self.count:
            ctx.set_state("count", 0)
            return TriggerResult.FIRE
        ctx.set_state("count", n)
        return TriggerResult.CONTINUE

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.set_state("count", None)


class _Continuous(Trigger):
    event_time = True

    def __init__(self, interval: int) -> None:
        if interval <= 0:
            raise InvalidJobError(f"continuous trigger interval must be > 0 ms, got {interval}")
        self.interval = interval

    def _next(self, time: int) -> int:
        return time - time % self.interval + self.interval - 1

    def _register(self, time: int, ctx: TriggerContext) -> None:
        if self.event_time:
            ctx.register_event_time_timer(time)
        else:
            ctx.register_processing_time_timer(time)

    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        if self.event_time and window.max_timestamp() <= ctx.current_watermark():
            return TriggerResult.FIRE
        if self.event_time:
            ctx.register_event_time_timer(window.max_timestamp())
        if ctx.get_state("next") is None:
            now = timestamp if self.event_time else ctx.current_processing_time()
            nxt = self._next(now)
            ctx.set_state("next", nxt)
            self._register(nxt, ctx)
        return TriggerResult.CONTINUE

    def _on_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if self.event_time and time == window.max_timestamp():
            return TriggerResult.FIRE
        if ctx.get_state("next") == time:
            nxt = time + self.interval
            ctx.set_state("next", nxt)
            if nxt <= window.max_timestamp():
                self._register(nxt, ctx)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        nxt = ctx.get_state("next")
        if nxt is not None:
            if self.event_time:
                ctx.delete_event_time_timer(nxt)
            else:
                ctx.delete_processing_time_timer(nxt)
        ctx.set_state("next", None)


class ContinuousEventTimeTrigger(_Continuous):
    """Fires every ``interval`` of event time while the window is open, and at its end."""

    @staticmethod
    def of(interval: Duration | int) -> ContinuousEventTimeTrigger:
        return ContinuousEventTimeTrigger(to_millis(interval, "interval"))

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._on_time(time, window, ctx)


class ContinuousProcessingTimeTrigger(_Continuous):
    event_time = False

    @staticmethod
    def of(interval: Duration | int) -> ContinuousProcessingTimeTrigger:
        return ContinuousProcessingTimeTrigger(to_millis(interval, "interval"))

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._on_time(time, window, ctx)


class PurgingTrigger(Trigger):
    """Turns every FIRE of the wrapped trigger into FIRE_AND_PURGE."""

    def __init__(self, nested: Trigger) -> None:
        self.nested = nested

    @staticmethod
    def of(nested: Trigger) -> PurgingTrigger:
        return PurgingTrigger(nested)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire else result

    def on_element(
        self, element: Any, timestamp: int, window: Window, ctx: TriggerContext
    ) -> TriggerResult:
        return self._purging(self.nested.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_processing_time(time, window, ctx))

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        self.nested.clear(window, ctx)

    def can_merge(self) -> bool:
        return self.nested.can_merge()

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        self.nested.on_merge(window, ctx)
