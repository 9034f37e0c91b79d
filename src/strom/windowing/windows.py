"""Window values: ``TimeWindow(start, end)`` (end exclusive) and the one ``GlobalWindow``."""

from __future__ import annotations

from typing import NamedTuple

MAX_TIMESTAMP = 2**63 - 1


class TimeWindow(NamedTuple):
    """``[start, end)`` in milliseconds. A tuple: cheap to hash, compare and pickle."""

    start: int
    end: int

    def max_timestamp(self) -> int:
        return self.end - 1

    def intersects(self, other: TimeWindow) -> bool:
        return self.start <= other.end and other.start <= self.end

    def cover(self, other: TimeWindow) -> TimeWindow:
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))


class GlobalWindow(NamedTuple):
    """The single window of ``GlobalWindows``; fires only through its trigger."""

    def max_timestamp(self) -> int:
        return MAX_TIMESTAMP


Window = TimeWindow | GlobalWindow


def window_start(timestamp: int, offset: int, size: int) -> int:
    """Start of the aligned window of ``size`` (with ``offset``) containing ``timestamp``."""
    return timestamp - (timestamp - offset) % size
