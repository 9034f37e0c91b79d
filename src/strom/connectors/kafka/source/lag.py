"""Consumer lag per partition, as metrics of the source subtask (group ``kafka``).

``lag.<topic>-<partition>`` is the partition's high watermark minus the reader's position, from
librdkafka's cached fetch state (no request); ``lag_max`` the largest of them. A partition at
its end or finished has lag 0. Gauges are read from other threads: they only read a dict the
reader thread writes, copying before iterating.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from strom.connectors.kafka.source.split import KafkaPartitionSplit
from strom.metrics import MetricGroup

__all__ = ["LagTracker"]

TP = tuple[str, int]

_REFRESH = 1.0  # seconds between lag updates of partitions that return nothing


class LagTracker:
    def __init__(self, metrics: MetricGroup) -> None:
        self._metrics = metrics
        self._lag: dict[TP, int] = {}
        self._next_refresh = 0.0
        metrics.gauge("lag_max", self.max)

    def max(self) -> int:
        return max(list(self._lag.values()), default=0)

    def track(self, split: KafkaPartitionSplit) -> None:
        self._metrics.gauge(f"lag.{split.id}", _LagGauge(self._lag, split.key))

    def caught_up(self, key: TP) -> None:
        self._lag[key] = 0

    def update(self, consumer: Consumer | None, split: KafkaPartitionSplit) -> None:
        if consumer is None or split.finished:
            return
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(*split.key), cached=True)
        except KafkaException:
            return
        position = split.next_offset if split.next_offset >= 0 else low
        if high >= 0 and position >= 0:
            self._lag[split.key] = max(0, high - position)

    def refresh(self, consumer: Consumer | None, splits: list[KafkaPartitionSplit]) -> None:
        """Update every partition's lag, at most once a second (called on empty polls)."""
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + _REFRESH
        for split in splits:
            self.update(consumer, split)


class _LagGauge:
    """A picklable gauge: the last known lag of one partition."""

    __slots__ = ("key", "lag")

    def __init__(self, lag: dict[TP, int], key: TP) -> None:
        self.lag = lag
        self.key = key

    def __call__(self) -> int:
        return self.lag.get(self.key, 0)
