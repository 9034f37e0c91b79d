"""When the rolling ``FileSink`` starts a new part file, and how part files are named.

A part file always rolls at a checkpoint: its bytes are pre-committed with the checkpoint's
transaction, so the part file can be finished once that checkpoint is complete (exactly-once).
A ``RollingPolicy`` decides about *additional* rolls between checkpoints — by size, age or
inactivity (``DefaultRollingPolicy``) or never (``OnCheckpointRollingPolicy``). Parts rolled
between checkpoints wait as pending files until the next checkpoint completes.

Time is processing time in milliseconds, read from the writer context, so tests can drive it
with a ``ManualClock``. Time-based rolls are checked whenever the writer is handed a batch
(there is no timer): an idle part is rolled at the next batch or at the next checkpoint.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = [
    "DefaultRollingPolicy",
    "OnCheckpointRollingPolicy",
    "OutputFileConfig",
    "PartFileInfo",
    "RollingPolicy",
]


@dataclass
class PartFileInfo:
    """What a rolling policy knows about the in-progress part file of one bucket."""

    bucket_id: str
    size: int
    """Bytes written to the part file so far."""
    created_at: int
    """Processing time (ms) when the part file was opened."""
    last_updated_at: int
    """Processing time (ms) of the last write."""


class RollingPolicy(ABC):
    """Decides when an in-progress part file is closed before the next checkpoint."""

    @abstractmethod
    def should_roll_on_event(self, part: PartFileInfo, element_size: int) -> bool:
        """Roll before writing an encoded record of ``element_size`` bytes to ``part``?"""

    @abstractmethod
    def should_roll_on_processing_time(self, part: PartFileInfo, now: int) -> bool:
        """Roll ``part`` at processing time ``now`` (ms)?"""


def _positive(name: str, value: float) -> float:
    # "not > 0" so that NaN, which compares false to everything, is rejected too.
    if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


@dataclass(frozen=True)
class DefaultRollingPolicy(RollingPolicy):
    """Roll when a part would grow past ``part_size_bytes``, is older than
    ``rollover_interval_s``, or has had no write for ``inactivity_interval_s`` (Flink's
    defaults: 128 MiB, 60 s, 60 s).

    A part holds at most ``part_size_bytes`` bytes unless a single record is larger (then that
    record is a part of its own).
    """

    part_size_bytes: int = 128 * 1024 * 1024
    rollover_interval_s: float = 60.0
    inactivity_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.part_size_bytes, bool)
            or not isinstance(self.part_size_bytes, int)
            or self.part_size_bytes < 1
        ):
            raise ValueError(f"part_size_bytes must be an int >= 1, got {self.part_size_bytes!r}")
        _positive("rollover_interval_s", self.rollover_interval_s)
        _positive("inactivity_interval_s", self.inactivity_interval_s)

    def should_roll_on_event(self, part: PartFileInfo, element_size: int) -> bool:
        return part.size > 0 and part.size + element_size > self.part_size_bytes

    def should_roll_on_processing_time(self, part: PartFileInfo, now: int) -> bool:
        return (
            now - part.created_at >= self.rollover_interval_s * 1000
            or now - part.last_updated_at >= self.inactivity_interval_s * 1000
        )


@dataclass(frozen=True)
class OnCheckpointRollingPolicy(RollingPolicy):
    """Roll only at checkpoints: one part file per bucket and checkpoint interval."""

    def should_roll_on_event(self, part: PartFileInfo, element_size: int) -> bool:
        return False

    def should_roll_on_processing_time(self, part: PartFileInfo, now: int) -> bool:
        return False


@dataclass(frozen=True)
class OutputFileConfig:
    """Names of part files: finished ``{part_prefix}-{subtask}-{counter}{part_suffix}``; while
    in progress ``.{part_prefix}-{subtask}-{counter}{part_suffix}.inprogress.{uuid}`` (hidden,
    so readers such as ``FileSource`` skip it)."""

    part_prefix: str = "part"
    part_suffix: str = ""

    def __post_init__(self) -> None:
        for name, value in (("part_prefix", self.part_prefix), ("part_suffix", self.part_suffix)):
            if not isinstance(value, str):
                raise TypeError(f"OutputFileConfig.{name} must be a str, got {value!r}")
            if "/" in value or "\\" in value or "\0" in value:
                raise ValueError(
                    f"OutputFileConfig.{name} {value!r} must not contain a path separator"
                )
        if not self.part_prefix:
            raise ValueError("OutputFileConfig.part_prefix must not be empty")
        if self.part_prefix[0] in "._":
            # Readers treat names starting with "." or "_" as hidden: finished parts would
            # vanish for them (and could be mistaken for in-progress files).
            raise ValueError(
                f"OutputFileConfig.part_prefix {self.part_prefix!r} must not start with "
                "'.' or '_' (such files are hidden)"
            )

    def finished_name(self, subtask: int, counter: int) -> str:
        return f"{self.part_prefix}-{subtask}-{counter}{self.part_suffix}"

    def in_progress_name(self, subtask: int, counter: int, uid: str) -> str:
        return f".{self.finished_name(subtask, counter)}.inprogress.{uid}"
