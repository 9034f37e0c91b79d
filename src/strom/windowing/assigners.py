"""Window assigners: which windows a record belongs to, and the trigger they use by default.

Sizes and slides are validated when the job is built (``InvalidJobError``): a non-positive
size or slide, a slide larger than the size, an offset outside the size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from strom.errors import InvalidJobError
from strom.eventtime import Duration, to_millis
from strom.windowing.triggers import (
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    Trigger,
)
from strom.windowing.windows import GlobalWindow, TimeWindow, Window, window_start


def _positive(value: Duration | int, what: str) -> int:
    ms = to_millis(value, what)
    if ms <= 0:
        raise InvalidJobError(f"window {what} must be > 0 ms, got {ms}")
    return ms


def _offset(value: Duration | int, size: int) -> int:
    ms = to_millis(value, "offset")
    if abs(ms) >= size:
        raise InvalidJobError(f"window offset must be smaller than the size ({size} ms), got {ms}")
    return ms


class WindowAssigner(ABC):
    is_event_time = True
    is_merging = False

    @abstractmethod
    def assign_windows(self, element: Any, timestamp: int) -> list[Window]: ...

    @abstractmethod
    def default_trigger(self) -> Trigger: ...

    def describe(self) -> str:
        return type(self).__name__


class TumblingEventTimeWindows(WindowAssigner):
    def __init__(self, size: int, offset: int = 0) -> None:
        self.size = size
        self.offset = offset

    @staticmethod
    def of(size: Duration | int, offset: Duration | int = 0) -> TumblingEventTimeWindows:
        ms = _positive(size, "size")
        return TumblingEventTimeWindows(ms, _offset(offset, ms))

    def assign_windows(self, element: Any, timestamp: int) -> list[Window]:
        start = window_start(timestamp, self.offset, self.size)
        return [TimeWindow(start, start + self.size)]

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()

    def describe(self) -> str:
        return f"TumblingEventTimeWindows({self.size} ms)"


class TumblingProcessingTimeWindows(TumblingEventTimeWindows):
    is_event_time = False

    @staticmethod
    def of(size: Duration | int, offset: Duration | int = 0) -> TumblingProcessingTimeWindows:
        ms = _positive(size, "size")
        return TumblingProcessingTimeWindows(ms, _offset(offset, ms))

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()


class SlidingEventTimeWindows(WindowAssigner):
    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        self.size = size
        self.slide = slide
        self.offset = offset

    @staticmethod
    def of(
        size: Duration | int, slide: Duration | int, offset: Duration | int = 0
    ) -> SlidingEventTimeWindows:
        s, sl = _check_sliding(size, slide)
        return SlidingEventTimeWindows(s, sl, _offset(offset, sl))

    def assign_windows(self, element: Any, timestamp: int) -> list[Window]:
        size, slide = self.size, self.slide
        last = window_start(timestamp, self.offset, slide)
        return [TimeWindow(s, s + size) for s in range(last, timestamp - size, -slide)]

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()

    @property
    def pane_size(self) -> int | None:
        """Slides that divide the size let a window be combined from panes of one slide."""
        return self.slide if self.size % self.slide == 0 else None

    def describe(self) -> str:
        return f"SlidingEventTimeWindows({self.size} ms, slide {self.slide} ms)"


class SlidingProcessingTimeWindows(SlidingEventTimeWindows):
    is_event_time = False

    @staticmethod
    def of(
        size: Duration | int, slide: Duration | int, offset: Duration | int = 0
    ) -> SlidingProcessingTimeWindows:
        s, sl = _check_sliding(size, slide)
        return SlidingProcessingTimeWindows(s, sl, _offset(offset, sl))

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()


def _check_sliding(size: Duration | int, slide: Duration | int) -> tuple[int, int]:
    s, sl = _positive(size, "size"), _positive(slide, "slide")
    if sl > s:
        raise InvalidJobError(
            f"a sliding window's slide ({sl} ms) must not be larger than its size ({s} ms)"
        )
    return s, sl


class EventTimeSessionWindows(WindowAssigner):
    """Sessions: records closer than ``gap`` end up in one window (windows merge)."""

    is_merging = True

    def __init__(self, gap: int) -> None:
        self.gap = gap

    @staticmethod
    def with_gap(gap: Duration | int) -> EventTimeSessionWindows:
        return EventTimeSessionWindows(_positive(gap, "session gap"))

    def assign_windows(self, element: Any, timestamp: int) -> list[Window]:
        return [TimeWindow(timestamp, timestamp + self.gap)]

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()


class ProcessingTimeSessionWindows(EventTimeSessionWindows):
    is_event_time = False

    @staticmethod
    def with_gap(gap: Duration | int) -> ProcessingTimeSessionWindows:
        return ProcessingTimeSessionWindows(_positive(gap, "session gap"))

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()


class GlobalWindows(WindowAssigner):
    """One window for all records of a key; it fires only through a trigger (e.g. count)."""

    is_event_time = False

    @staticmethod
    def create() -> GlobalWindows:
        return GlobalWindows()

    def assign_windows(self, element: Any, timestamp: int) -> list[Window]:
        return [GlobalWindow()]

    def default_trigger(self) -> Trigger:
        return NeverTrigger()
