"""Watermark strategies and generators.

A generator sees every record's timestamp (``on_event``; ``on_events`` for a whole batch) and
is asked periodically (``on_periodic_emit``, every auto-watermark interval) for a watermark: a
promise that no record with a timestamp <= the watermark follows. Punctuated generators emit
from ``on_event`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from strom.errors import InvalidJobError
from strom.eventtime.duration import Duration, to_millis

MIN_TIMESTAMP = -(2**63)


class WatermarkOutput(ABC):
    @abstractmethod
    def emit_watermark(self, watermark: int) -> None: ...

    @abstractmethod
    def mark_idle(self) -> None: ...

    @abstractmethod
    def mark_active(self) -> None: ...


class WatermarkGenerator(ABC):
    @abstractmethod
    def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None: ...

    @abstractmethod
    def on_periodic_emit(self, output: WatermarkOutput) -> None: ...

    def on_events(self, events: list[Any], timestamps: list[int], output: WatermarkOutput) -> None:
        """A batch at once; override for speed (the built-in generators do)."""
        for event, ts in zip(events, timestamps, strict=True):
            self.on_event(event, ts, output)


class BoundedOutOfOrdernessWatermarks(WatermarkGenerator):
    """Watermark = highest timestamp seen - max out-of-orderness - 1."""

    def __init__(self, max_out_of_orderness_ms: int) -> None:
        if max_out_of_orderness_ms < 0:
            raise InvalidJobError(
                f"max out-of-orderness must be >= 0 ms, got {max_out_of_orderness_ms}"
            )
        self.delay = max_out_of_orderness_ms
        self.max_timestamp = MIN_TIMESTAMP + max_out_of_orderness_ms + 1

    def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
        if event_timestamp > self.max_timestamp:
            self.max_timestamp = event_timestamp

    def on_events(self, events: list[Any], timestamps: list[int], output: WatermarkOutput) -> None:
        if timestamps:
            top = max(timestamps)
            if top > self.max_timestamp:
                self.max_timestamp = top

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        output.emit_watermark(self.max_timestamp - self.delay - 1)


class MonotonousTimestampsWatermarks(BoundedOutOfOrdernessWatermarks):
    """For timestamps that never decrease: watermark = highest timestamp - 1."""

    def __init__(self) -> None:
        super().__init__(0)


class NoWatermarksGenerator(WatermarkGenerator):
    def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
        pass

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        pass


class TimestampAssigner(ABC):
    @abstractmethod
    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int: ...


TimestampFunction = Callable[[Any, "int | None"], int]


class WatermarkStrategy:
    """How to get timestamps and watermarks (immutable; ``with_*`` return new strategies)."""

    def __init__(
        self,
        generator_supplier: Callable[[], WatermarkGenerator],
        timestamp_assigner: TimestampAssigner | TimestampFunction | None = None,
        idle_timeout_ms: int | None = None,
    ) -> None:
        self.generator_supplier = generator_supplier
        self.timestamp_assigner = timestamp_assigner
        self.idle_timeout_ms = idle_timeout_ms

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy:
        return WatermarkStrategy(MonotonousTimestampsWatermarks)

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness: Duration | int) -> WatermarkStrategy:
        delay = to_millis(max_out_of_orderness, "max out-of-orderness")
        if delay < 0:
            raise InvalidJobError(f"max out-of-orderness must be >= 0 ms, got {delay}")
        return WatermarkStrategy(lambda: BoundedOutOfOrdernessWatermarks(delay))

    @staticmethod
    def for_generator(generator_supplier: Callable[[], WatermarkGenerator]) -> WatermarkStrategy:
        return WatermarkStrategy(generator_supplier)

    @staticmethod
    def no_watermarks() -> WatermarkStrategy:
        return WatermarkStrategy(NoWatermarksGenerator)

    def with_timestamp_assigner(
        self, assigner: TimestampAssigner | TimestampFunction
    ) -> WatermarkStrategy:
        """``assigner(value, record_timestamp) -> int`` (ms), or a ``TimestampAssigner``."""
        if not (isinstance(assigner, TimestampAssigner) or callable(assigner)):
            raise InvalidJobError(f"timestamp assigner must be callable, got {assigner!r}")
        return WatermarkStrategy(self.generator_supplier, assigner, self.idle_timeout_ms)

    def with_idleness(self, idle_timeout: Duration | int) -> WatermarkStrategy:
        """A split (or source subtask) without records for this long stops holding back
        the watermark until it produces records again."""
        ms = to_millis(idle_timeout, "idle timeout")
        if ms <= 0:
            raise InvalidJobError(f"idle timeout must be > 0 ms, got {ms}")
        return WatermarkStrategy(self.generator_supplier, self.timestamp_assigner, ms)

    def timestamp_function(self) -> Callable[[Any, int | None], int] | None:
        a = self.timestamp_assigner
        if a is None:
            return None
        if isinstance(a, TimestampAssigner):
            return a.extract_timestamp
        return a
