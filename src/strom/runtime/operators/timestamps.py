"""Timestamps and watermarks from a ``WatermarkStrategy``.

``WatermarkEmitter`` keeps one generator per split of a source subtask (Kafka partition,
file, ...), assigns timestamps batch by batch, asks the generators for periodic watermarks and
emits the minimum over active splits — per-split watermarks, as in Flink. A split without
records for the strategy's idle timeout stops holding the watermark back; a reader that owns
nothing at all marks the whole subtask idle. ``TimestampsAndWatermarksOperator`` applies a
strategy in the middle of a job (``assign_timestamps_and_watermarks``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

from strom.errors import StromError
from strom.eventtime import WatermarkGenerator, WatermarkOutput, WatermarkStrategy
from strom.runtime.elements import MAX_WATERMARK, MIN_WATERMARK
from strom.runtime.operators.base import Output, StreamOperator, failed_record


class MissingTimestampError(StromError, ValueError):
    """A record has no event timestamp where event time needs one."""


class _Split(WatermarkOutput):
    __slots__ = ("generator", "idle", "last_seen", "watermark")

    def __init__(self, generator: WatermarkGenerator, now: int) -> None:
        self.generator = generator
        self.watermark = MIN_WATERMARK
        self.idle = False
        self.last_seen = now

    def emit_watermark(self, watermark: int) -> None:
        if watermark > self.watermark:
            self.watermark = watermark

    def mark_idle(self) -> None:
        self.idle = True

    def mark_active(self) -> None:
        self.idle = False


class WatermarkEmitter:
    def __init__(
        self,
        strategy: WatermarkStrategy,
        output: Output,
        clock: Callable[[], int],
        interval_ms: int,
        where: str,
    ) -> None:
        self._supplier = strategy.generator_supplier
        self._ts_fn = strategy.timestamp_function()
        self._idle_timeout = strategy.idle_timeout_ms
        self._output = output
        self._clock = clock
        self._interval = interval_ms
        self._where = where
        self._splits: dict[Any, _Split] = {}
        self._current = MIN_WATERMARK
        self._idle = False
        self._last_periodic = clock()

    def assign(self, split: Any, values: list[Any], timestamps: list[int] | None) -> list[int]:
        """Timestamps for a batch from one split; feeds that split's generator (emit the batch,
        then call ``after_batch``)."""
        fn = self._ts_fn
        it = iter(values)
        try:
            if fn is not None:
                # map() keeps the loop in C; the iterator tells which record failed
                if timestamps is None:
                    ts = list(map(fn, it, repeat(None)))
                else:
                    ts = list(map(fn, it, timestamps))
                if type(ts[0]) is not int or type(ts[-1]) is not int:
                    ts = [int(t) for t in ts]
            elif timestamps is None:
                raise MissingTimestampError(
                    "the source gives no timestamps and the watermark strategy has no "
                    "timestamp assigner (use with_timestamp_assigner)"
                )
            else:
                ts = timestamps
        except MissingTimestampError as e:
            raise MissingTimestampError(f"{self._where}: record {values[0]!r:.120}: {e}") from None
        except Exception as e:
            v = failed_record(values, it)
            raise MissingTimestampError(
                f"{self._where}: the timestamp assigner failed on record {v!r:.120}: "
                f"{type(e).__name__}: {e}"
            ) from e
        split_state = self._splits.get(split)
        now = self._clock()
        if split_state is None:
            split_state = self._splits[split] = _Split(self._supplier(), now)
        split_state.last_seen = now
        split_state.idle = False
        split_state.generator.on_events(values, ts, split_state)
        return ts

    def after_batch(self) -> None:
        """Emit what the last ``assign`` moved the watermark to; called once its batch has been
        emitted, so a watermark never overtakes the records that produced it."""
        self._combine(False)

    def declare_splits(self, splits: list[Any]) -> None:
        """Splits the reader owns: each holds event time back until it produces records (or
        goes idle), even before its first batch."""
        known = self._splits
        for split in splits:
            if split not in known:
                known[split] = _Split(self._supplier(), self._clock())

    def tick(self, now: int, reader_idle: bool = False) -> None:
        if now - self._last_periodic >= self._interval:
            self._last_periodic = now
            for split in self._splits.values():
                split.generator.on_periodic_emit(split)
        timeout = self._idle_timeout
        if timeout is not None:
            for split in self._splits.values():
                if not split.idle and now - split.last_seen >= timeout:
                    split.idle = True
        self._combine(reader_idle)

    def _combine(self, reader_idle: bool) -> None:
        splits = self._splits.values()
        active = [s for s in splits if not s.idle]
        if reader_idle or (not active and splits):
            if not self._idle:
                self._idle = True
                self._output.emit_watermark_status(True)
            return
        if not active:
            return  # nothing read yet: hold event time back (no idleness declared)
        if self._idle:
            self._idle = False
            self._output.emit_watermark_status(False)
        wm = min(s.watermark for s in active)
        if wm > self._current:
            self._current = wm
            self._output.emit_watermark(wm)


class TimestampsAndWatermarksOperator(StreamOperator):
    """``assign_timestamps_and_watermarks``: replaces timestamps and watermarks from here on.
    Upstream watermarks are dropped, except the final one at end of input."""

    uses_ticks = True

    def __init__(self, name: str, strategy: WatermarkStrategy, interval_ms: int) -> None:
        super().__init__(name)
        self.strategy = strategy
        self.interval_ms = interval_ms

    def open(self) -> None:
        super().open()
        self._emitter = WatermarkEmitter(
            self.strategy, self.output, self.ctx.processing_time, self.interval_ms, self.name
        )

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        ts = self._emitter.assign(None, values, timestamps)
        self.output.emit(values, ts)
        self._emitter.after_batch()

    def tick(self, now_ms: int) -> None:
        self._emitter.tick(now_ms)

    def process_watermark(self, watermark: int) -> None:
        if watermark == MAX_WATERMARK:
            self.output.emit_watermark(watermark)

    def process_watermark_status(self, idle: bool) -> None:
        pass  # this operator decides idleness from its own input
