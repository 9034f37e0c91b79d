"""The reader of one Kafka source subtask. Guarantee: exactly-once with checkpoints.

The reader owns the partitions the assignment formula gives its subtask and reads them with
``assign()`` — never ``subscribe()``: Kafka's group coordinator plays no part, so restores and
rescales decide alone which subtask reads what (seed §3.12–3.13). Per ``poll`` it makes one
batch ``consume()`` call and hands the records out one partition per :class:`Batch` (so the
runtime keeps per-partition watermarks); decoded records of other partitions wait for the next
``poll`` and count as unread until then. State is the position after the last record returned.

Offsets go back to Kafka for monitoring only, never for recovery (``commits``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from strom.connectors.base import Batch, ReaderContext, SourceReader
from strom.connectors.kafka.errors import KafkaSourceError
from strom.connectors.kafka.source.assignment import split_owner
from strom.connectors.kafka.source.badrecords import BadRecordHandler
from strom.connectors.kafka.source.commits import OffsetCommitter
from strom.connectors.kafka.source.decoder import Decoded, Decoder
from strom.connectors.kafka.source.discovery import PartitionDiscoverer, fetch_partition_counts
from strom.connectors.kafka.source.offsets import (
    resolve_start_offsets,
    resolve_stopping_offsets,
)
from strom.connectors.kafka.source.split import EARLIEST, KafkaPartitionSplit, parse_state_entry

if TYPE_CHECKING:
    from strom.connectors.kafka.source.source import KafkaSource

__all__ = ["KafkaSourceReader"]

log = logging.getLogger("strom.connectors.kafka.source")
T = TypeVar("T")
TP = tuple[str, int]

_LAG_REFRESH = 1.0  # seconds between lag updates of partitions that return nothing
_WARN_EVERY = 30.0  # seconds between repeated warnings about the same client error


class KafkaSourceReader(SourceReader[T], Generic[T]):
    def __init__(self, source: KafkaSource[T], ctx: ReaderContext) -> None:
        self._src = source
        self._ctx = ctx
        self._me = ctx.subtask_index
        self._n = ctx.parallelism
        self._max_wait = ctx.max_poll_wait
        self._timeout = source.request_timeout_ms / 1000
        self._splits: dict[TP, KafkaPartitionSplit] = {}
        self._known: dict[str, int] = {}  # partition counts of subscribed topics seen so far
        self._pending: deque[tuple[KafkaPartitionSplit, Decoded[T]]] = deque()
        self._fatal: ClientError | None = None
        self._warned: dict[int, float] = {}
        self._wake = threading.Event()
        self._lag: dict[TP, int] = {}
        self._next_lag = 0.0
        self._discoverer: PartitionDiscoverer | None = None
        self._consumer: Consumer | None = None
        metrics = ctx.metrics.add_group("kafka")
        self._metrics = metrics
        self._committer = OffsetCommitter(
            group=source.group_id is not None,
            auto_commit=source.auto_commit,
            on_checkpoint=source.commit_offsets_on_checkpoint,
            metrics=metrics,
            is_finished=lambda key: self._splits[key].finished,
            checkpointing=ctx.checkpointing,
        )
        self._discovered = metrics.counter("partitions_discovered")
        # gauges are read from other threads: copy (atomically, under the GIL) before iterating
        metrics.gauge(
            "assigned_partitions", lambda: sum(not s.finished for s in list(self._splits.values()))
        )
        metrics.gauge("lag_max", lambda: max(list(self._lag.values()), default=0))

    # -- lifecycle ------------------------------------------------------------------------

    def _consumer_config(self) -> dict[str, Any]:
        src = self._src
        group = src.group_id or f"strom-uncommitted-{uuid.uuid4().hex}"
        conf = src.properties.client_config()
        conf.update(
            {
                "group.id": group,
                # offsets are stored by the reader only after their records were processed
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "error_cb": self._on_client_error,
                "on_commit": self._committer.on_commit,
            }
        )
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self._ctx.operator_name).strip("_")
        conf.setdefault("client.id", f"strom-{name}-{self._me}")  # names it in broker logs
        conf.setdefault("logger", logging.getLogger("strom.connectors.kafka.librdkafka"))
        if src.group_id is None:
            conf["enable.auto.commit"] = False  # a made-up group id is never committed to
        return conf

    def open(self, restored_state: list[Any] | None) -> None:
        src = self._src
        self._consumer = self._committer.consumer = consumer = Consumer(self._consumer_config())
        self._bad = BadRecordHandler(src.bad_record_policy, self._ctx, src.properties)
        self._decoder: Decoder[T] = Decoder(src.schema, src.is_record_schema, self._bad)
        self._decoder.open()
        counts = src.subscription.select(fetch_partition_counts(consumer, self._timeout))
        missing = [t for t in src.subscription.topics or () if t not in counts]
        if missing:
            raise KafkaSourceError(f"KafkaSource: topics {missing} do not exist")
        self._known = dict(counts)
        owned = [(t, p) for t, n in sorted(counts.items()) for p in range(n) if self._owns(t, p)]
        splits: dict[TP, KafkaPartitionSplit] = {}
        if restored_state is None:
            starts = resolve_start_offsets(
                consumer,
                owned,
                mode=src.startup_mode,
                reset_strategy=src.reset_strategy,
                specific=src.specific_offsets,
                timestamp_ms=src.startup_timestamp,
                timeout=self._timeout,
            )
            splits = {tp: KafkaPartitionSplit(*tp, starts[tp]) for tp in owned}
        else:
            splits = self._restore(restored_state)
            for tp in owned:  # partitions created since the checkpoint: from the beginning
                splits.setdefault(tp, KafkaPartitionSplit(*tp, EARLIEST))
        if src.stopping is not None:
            unresolved = [tp for tp, s in splits.items() if s.stopping_offset is None]
            stops = resolve_stopping_offsets(consumer, unresolved, src.stopping, self._timeout)
            for tp in unresolved:
                splits[tp].stopping_offset = stops[tp]
        self._add_splits(list(splits.values()))
        if src.discovery_interval is not None:
            self._discoverer = PartitionDiscoverer(
                src.properties, src.discovery_interval, self._timeout
            )
            self._discoverer.start()

    def _restore(self, entries: list[Any]) -> dict[TP, KafkaPartitionSplit]:
        splits: dict[TP, KafkaPartitionSplit] = {}
        dropped: set[str] = set()
        for entry in entries:
            split = parse_state_entry(entry)
            if not self._src.subscription.matches(split.topic):
                dropped.add(split.topic)
                continue
            if not self._owns(split.topic, split.partition):
                continue
            previous = splits.get(split.key)
            if previous is None or split.next_offset > previous.next_offset:
                splits[split.key] = split
            self._known[split.topic] = max(self._known.get(split.topic, 0), split.partition + 1)
        if dropped:
            log.info(
                "%s[%d]: dropping restored offsets of topics no longer subscribed: %s",
                self._ctx.operator_name,
                self._me,
                sorted(dropped),
            )
        return splits

    def close(self) -> None:
        if self._discoverer is not None:
            self._discoverer.stop()
        bad = getattr(self, "_bad", None)
        if bad is not None:
            bad.close()
        if self._consumer is not None:
            # with auto-commit on (checkpointing off) this commits the stored offsets
            self._consumer.close()
            self._consumer = None

    def wakeup(self) -> None:
        self._wake.set()

    def is_idle(self) -> bool:
        return not any(not s.finished for s in self._splits.values())

    def active_splits(self) -> list[str] | None:
        return [s.id for s in self._splits.values() if not s.finished]

    # -- reading --------------------------------------------------------------------------

    def poll(self, max_records: int) -> list[T] | Batch[T] | None:
        if self._fatal is not None:
            raise KafkaSourceError(f"Kafka consumer failed: {self._fatal}")
        consumer = self._consumer
        assert consumer is not None, "poll() before open()"
        self._committer.store_processed()
        if self._discoverer is not None:
            counts = self._discoverer.take()
            if counts is not None:
                self._on_discovered(counts)
        if not self._pending:
            if self.is_idle():
                if self._done():
                    self._bad.flush(end_of_input=True)
                    return None
                if self._wake.wait(self._max_wait):
                    self._wake.clear()
                return []
            self._fetch(consumer, max_records)
        if not self._pending:
            self._refresh_lag(consumer)
            return []
        split, decoded = self._pending.popleft()
        return self._emit(split, decoded)

    def _fetch(self, consumer: Consumer, max_records: int) -> None:
        runs: dict[TP, list[Any]] = {}
        splits = self._splits
        # Any: the stubs type topic()/partition() as optional, which they are not for fetched
        # records, and this loop is too hot for per-record checks
        msgs: list[Any] = consumer.consume(max_records, self._max_wait)
        for msg in msgs:
            err = msg.error()
            key = (msg.topic(), msg.partition())
            split = splits.get(key)
            if err is not None:
                if err.code() == ClientError._PARTITION_EOF:
                    if split is not None:
                        self._on_end_of_partition(split, msg.offset(), runs)
                else:
                    self._on_client_error(err)
                continue
            if split is None or split.finished:
                continue  # already unassigned: a stopped partition's last fetched records
            stop = split.stopping_offset
            if stop is not None and msg.offset() >= stop:
                split.stop_seen = True
                continue
            run = runs.get(key)
            if run is None:
                runs[key] = [msg]
            else:
                run.append(msg)
        for key, run in runs.items():
            split = splits[key]
            self._pending.append((split, self._decoder.decode(run)))
        for split in list(splits.values()):
            if split.stop_seen and not split.finished and split.key not in runs:
                self._finish(split)
        if self._fatal is not None:
            raise KafkaSourceError(f"Kafka consumer failed: {self._fatal}")

    def _emit(self, split: KafkaPartitionSplit, decoded: Decoded[T]) -> Batch[T] | list[T]:
        split.next_offset = decoded.next_offset
        if (
            decoded.ended
            or split.stop_seen
            or (split.stopping_offset is not None and split.next_offset >= split.stopping_offset)
        ):
            self._finish(split)
        self._committer.emitted(split.key, split.next_offset)
        self._update_lag(split)
        if not decoded.values:
            return []
        return Batch(decoded.values, decoded.timestamps, split.id)

    def _on_end_of_partition(self, split: KafkaPartitionSplit, offset: int, runs: Any) -> None:
        stop = split.stopping_offset
        if stop is not None and offset >= stop:
            # past the stop there is nothing but (maybe) transaction markers
            split.stop_seen = True
        elif split.key not in runs:
            self._lag[split.key] = 0

    def _finish(self, split: KafkaPartitionSplit) -> None:
        split.finished = True
        stop = split.stopping_offset
        if stop is not None and split.next_offset < stop:
            split.next_offset = stop  # only markers or skipped records lay in between
        self._lag[split.key] = 0
        self._committer.emitted(split.key, split.next_offset)
        if self._consumer is not None:
            try:
                self._consumer.incremental_unassign([TopicPartition(*split.key)])
            except KafkaException as exc:
                log.debug("unassign %s: %s", split.id, exc)
        log.info("%s[%d]: partition %s finished", self._ctx.operator_name, self._me, split.id)

    def _done(self) -> bool:
        if self._src.stopping is not None:
            return True  # bounded: every owned partition reached its stop (or none owned)
        # unbounded: ends when end-of-stream markers stopped every partition it owns (as
        # Flink's FlinkKafkaConsumer does, discovery or not); owning none, it idles instead
        return bool(self._splits)

    # -- partitions -----------------------------------------------------------------------

    def _owns(self, topic: str, partition: int) -> bool:
        return split_owner(topic, partition, self._n) == self._me

    def _add_splits(self, splits: list[KafkaPartitionSplit]) -> None:
        active: list[TopicPartition] = []
        for split in splits:
            self._splits[split.key] = split
            stop = split.stopping_offset
            if stop is not None and (split.next_offset >= stop or stop == 0):
                split.finished = True
                split.next_offset = max(split.next_offset, stop)
                continue
            active.append(TopicPartition(split.topic, split.partition, split.next_offset))
            self._metrics.gauge(f"lag.{split.id}", _LagGauge(self._lag, split.key))
        if active and self._consumer is not None:
            self._consumer.incremental_assign(active)

    def _on_discovered(self, counts: dict[str, int]) -> None:
        new: list[KafkaPartitionSplit] = []
        for topic, count in sorted(self._src.subscription.select(counts).items()):
            before = self._known.get(topic, 0)
            if count <= before:
                continue
            self._known[topic] = count
            log.info("discovered partitions %d..%d of topic %s", before, count - 1, topic)
            for p in range(before, count):
                if self._owns(topic, p) and (topic, p) not in self._splits:
                    new.append(KafkaPartitionSplit(topic, p, EARLIEST))
        if new:
            self._discovered.inc(len(new))
            self._add_splits(new)

    # -- offsets --------------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self._bad.snapshot_state(checkpoint_id)
        self._committer.snapshot(
            checkpoint_id, {s.key: s.next_offset for s in self._splits.values()}
        )
        return [s.state_entry() for s in self._splits.values()]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self._bad.notify_checkpoint_complete(checkpoint_id)
        self._committer.checkpoint_complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self._committer.checkpoint_aborted(checkpoint_id)

    def _on_client_error(self, err: ClientError) -> None:
        if err.fatal():
            self._fatal = err
            return
        now = time.monotonic()
        if now - self._warned.get(err.code(), -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[err.code()] = now
            log.warning("%s[%d]: Kafka client error: %s", self._ctx.operator_name, self._me, err)

    # -- lag ------------------------------------------------------------------------------

    def _update_lag(self, split: KafkaPartitionSplit) -> None:
        consumer = self._consumer
        if consumer is None or split.finished:
            return
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(*split.key), cached=True)
        except KafkaException:
            return
        position = split.next_offset if split.next_offset >= 0 else low
        if high >= 0 and position >= 0:
            self._lag[split.key] = max(0, high - position)

    def _refresh_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + _LAG_REFRESH
        for split in self._splits.values():
            self._update_lag(split)


class _LagGauge:
    """A picklable gauge: the last known lag of one partition."""

    __slots__ = ("key", "lag")

    def __init__(self, lag: dict[TP, int], key: TP) -> None:
        self.lag = lag
        self.key = key

    def __call__(self) -> int:
        return self.lag.get(self.key, 0)
