"""What travels through channels: record batches and control events.

Records travel in batches (``RecordBatch``: parallel lists of values and optional timestamps);
control events (watermarks, checkpoint barriers, end of input) travel between batches, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_WATERMARK = 2**63 - 1
MIN_WATERMARK = -(2**63)


class RecordBatch:
    __slots__ = ("timestamps", "values")

    def __init__(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.values = values
        self.timestamps = timestamps

    def __repr__(self) -> str:
        return f"RecordBatch({len(self.values)} records)"


@dataclass(frozen=True, slots=True)
class Watermark:
    timestamp: int


@dataclass(frozen=True, slots=True)
class WatermarkStatus:
    """An input went idle (no records for a while) or became active again; idle inputs do
    not hold back the combined watermark."""

    idle: bool


@dataclass(frozen=True, slots=True)
class CheckpointBarrier:
    checkpoint_id: int
    timestamp: int
    is_savepoint: bool = False


@dataclass(frozen=True, slots=True)
class EndOfInput:
    pass


END_OF_INPUT = EndOfInput()
StreamElement = RecordBatch | Watermark | WatermarkStatus | CheckpointBarrier | EndOfInput
