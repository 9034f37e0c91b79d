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
import uuid
from bisect import bisect_left
from collections import deque
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as ClientError

from strom.connectors.base import Batch, ReaderContext, SourceReader
from strom.connectors.kafka.errors import KafkaSourceError
from strom.connectors.kafka.source.assignment import split_owner
from strom.connectors.kafka.source.badrecords import BadRecordHandler
from strom.connectors.kafka.source.client import ClientErrors, client_config, close_consumer
from strom.connectors.kafka.source.commits import OffsetCommitter
from strom.connectors.kafka.source.decoder import Decoded, Decoder
from strom.connectors.kafka.source.discovery import PartitionDiscoverer, fetch_subscribed_counts
from strom.connectors.kafka.source.lag import LagTracker
from strom.connectors.kafka.source.lookup import OffsetLookup
from strom.connectors.kafka.source.offsets import resolve_start_offsets, resolve_stopping_offsets
from strom.connectors.kafka.source.split import EARLIEST, KafkaPartitionSplit, parse_state_entry

if TYPE_CHECKING:
    from strom.connectors.kafka.source.source import KafkaSource

__all__ = ["KafkaSourceReader"]

log = logging.getLogger("strom.connectors.kafka.source")
T = TypeVar("T")
TP = tuple[str, int]

_error_of = Message.error
_topic_of = Message.topic
_partition_of = Message.partition
_offset_of: Any = Message.offset
_first = itemgetter(0)
_second = itemgetter(1)


class KafkaSourceReader(SourceReader[T], Generic[T]):
    def __init__(self, source: KafkaSource[T], ctx: ReaderContext) -> None:
        self._src = source
        self._ctx = ctx
        self._me = ctx.subtask_index
        self._n = ctx.parallelism
        self._name = f"{ctx.operator_name}[{ctx.subtask_index}]"
        # names the client in broker logs
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", ctx.operator_name).strip("_")
        self._client_id = f"strom-{slug}-{ctx.subtask_index}"
        self._max_wait = ctx.max_poll_wait
        self._timeout = source.request_timeout_ms / 1000
        # a made-up group id is never committed to (auto-commit is off without group_id)
        self._group = source.group_id or f"strom-uncommitted-{uuid.uuid4().hex}"
        self._splits: dict[TP, KafkaPartitionSplit] = {}
        self._known: dict[str, int] = {}  # partition counts of subscribed topics seen so far
        self._pending: deque[tuple[KafkaPartitionSplit, Decoded[T]]] = deque()
        self._wake = threading.Event()
        self._discoverer: PartitionDiscoverer | None = None
        self._consumer: Consumer | None = None
        self._bad: BadRecordHandler | None = None
        self._errors = ClientErrors(self._name)
        metrics = ctx.metrics.add_group("kafka")
        self._lag = LagTracker(metrics)
        self._committer = OffsetCommitter(
            group=source.group_id is not None,
            # with checkpointing, offsets are committed when checkpoints complete, never by
            # the client on its own (Flink ignores enable.auto.commit then too)
            auto_commit=source.auto_commit and not ctx.checkpointing,
            on_checkpoint=source.commit_offsets_on_checkpoint,
            metrics=metrics,
            is_finished=lambda key: self._splits[key].finished,
        )
        self._discovered = metrics.counter("partitions_discovered")
        metrics.gauge("assigned_partitions", self._assigned)

    # -- lifecycle ------------------------------------------------------------------------

    def _consumer_config(self, client: dict[str, Any]) -> dict[str, Any]:
        conf = dict(client)
        conf.update(
            {
                # offsets are stored by the reader only after their records were processed
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "error_cb": self._errors.on_error,
                "on_commit": self._committer.on_commit,
            }
        )
        if not self._committer.auto_commit:
            # also keeps close() from a synchronous final commit that can wait on the broker
            conf["enable.auto.commit"] = False
        return conf

    def open(self, restored_state: list[Any] | None) -> None:
        src = self._src
        client = client_config(src.properties, self._group, src.reset_strategy, self._client_id)
        try:
            consumer = Consumer(self._consumer_config(client))
        except KafkaException as exc:
            why = src.properties.scrub(str(exc))
            raise KafkaSourceError(f"{self._name}: cannot create the consumer: {why}") from None
        self._consumer = self._committer.consumer = consumer
        self._bad = BadRecordHandler(src.bad_record_policy, self._ctx, src.properties)
        self._decoder: Decoder[T] = Decoder(src.schema, src.is_record_schema, self._bad)
        self._decoder.open()
        counts = fetch_subscribed_counts(consumer, src.subscription, self._timeout)
        self._known = dict(counts)
        owned = [(t, p) for t, n in sorted(counts.items()) for p in range(n) if self._owns(t, p)]
        lookup = OffsetLookup(consumer, client, self._timeout)
        if restored_state is None:
            starts = resolve_start_offsets(
                lookup,
                owned,
                mode=src.startup_mode,
                reset_strategy=src.reset_strategy,
                specific=src.specific_offsets,
                timestamp_ms=src.startup_timestamp,
            )
            splits = {tp: KafkaPartitionSplit(*tp, starts[tp]) for tp in owned}
        else:
            splits = self._restore(restored_state)
            for tp in owned:  # partitions created since the checkpoint: from the beginning
                splits.setdefault(tp, KafkaPartitionSplit(*tp, EARLIEST))
        if src.stopping is not None:
            unresolved = [tp for tp, s in splits.items() if s.stopping_offset is None]
            stops = resolve_stopping_offsets(lookup, unresolved, src.stopping)
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
                "%s: dropping restored offsets of topics no longer subscribed: %s",
                self._name,
                sorted(dropped),
            )
        return splits

    def close(self) -> None:
        if self._discoverer is not None:
            self._discoverer.stop()
        if self._bad is not None:
            self._bad.close()
        consumer, self._consumer = self._consumer, None
        self._committer.consumer = None
        if consumer is not None:
            # without checkpointing (auto-commit on) this commits the stored offsets
            close_consumer(consumer, self._timeout, self._name)

    def wakeup(self) -> None:
        self._wake.set()

    def is_idle(self) -> bool:
        return all(s.finished for s in self._splits.values())

    def active_splits(self) -> list[str] | None:
        return [s.id for s in self._splits.values() if not s.finished]

    def _assigned(self) -> int:
        # read by metric reporters on other threads: iterate a copy
        return sum(not s.finished for s in list(self._splits.values()))

    # -- reading --------------------------------------------------------------------------

    def poll(self, max_records: int) -> list[T] | Batch[T] | None:
        self._errors.raise_fatal()
        consumer = self._consumer
        assert consumer is not None, "poll() before open()"
        assert self._bad is not None
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
            self._lag.refresh(consumer, list(self._splits.values()))
            return []
        split, decoded = self._pending.popleft()
        return self._emit(split, decoded)

    def _fetch(self, consumer: Consumer, max_records: int) -> None:
        """One ``consume``: records grouped into a run per partition (librdkafka keeps each
        partition's records in order), cut at stopping offsets, decoded into ``_pending``."""
        # Any: the stubs type topic()/partition() as optional, which they are not for fetched
        # records. Per-record work runs in C (map, zip, groupby): this is the hot path.
        msgs: list[Any] = consumer.consume(max_records, self._max_wait)
        if not msgs:
            return
        stopped: list[KafkaPartitionSplit] = []
        # any(): a KafkaError is true, and comparing one with None raises (so no count(None))
        if any(map(_error_of, msgs)):
            # end-of-partition events or errors among the records (rare at volume: they come
            # when a partition is caught up)
            records = []
            for msg in msgs:
                if msg.error() is None:
                    records.append(msg)
                else:
                    self._on_event(msg, stopped)
            msgs = records
        keys: list[Any] = list(zip(map(_topic_of, msgs), map(_partition_of, msgs), strict=True))
        runs: dict[TP, list[Any]] = {}
        if keys and keys.count(keys[0]) == len(keys):
            runs[keys[0]] = msgs  # the usual case: one partition's fetched batch
        else:
            for k, group in groupby(zip(keys, msgs, strict=True), key=_first):
                runs.setdefault(k, []).extend(map(_second, group))
        splits = self._splits
        for k, run in runs.items():
            split = splits.get(k)
            if split is None or split.finished:
                continue  # already unassigned: a stopped partition's last fetched records
            stop = split.stopping_offset
            if stop is not None and run[-1].offset() >= stop:
                split.stop_seen = True
                del run[bisect_left(run, stop, key=_offset_of) :]
                if not run:
                    stopped.append(split)
                    continue
            self._pending.append((split, self._decoder.decode(run)))
        for split in stopped:
            # nothing of it left to emit: finish now (with records pending, _emit does)
            if not split.finished and not any(s is split for s, _ in self._pending):
                self._finish(split, at_stop=True)
        self._errors.raise_fatal()

    def _on_event(self, msg: Any, stopped: list[KafkaPartitionSplit]) -> None:
        """An error or end-of-partition event ``consume`` returned instead of a record."""
        err: ClientError = msg.error()
        topic = msg.topic()
        if topic is None:
            self._errors.on_error(err)  # about the client, not a partition
            return
        split = self._splits.get((topic, msg.partition()))
        if split is None or split.finished:
            return
        code = err.code()
        if code == ClientError._PARTITION_EOF:
            stop = split.stopping_offset
            if stop is not None and msg.offset() >= stop:
                # past the stop there is nothing but (maybe) transaction markers
                split.stop_seen = True
                stopped.append(split)
            else:
                self._lag.caught_up(split.key)
        elif code == ClientError._AUTO_OFFSET_RESET:
            raise KafkaSourceError(
                f"{self._name}: offset {msg.offset()} of {split.id} is out of range and "
                f"auto.offset.reset is 'error': {err.str()}"
            )
        else:
            self._errors.on_error(err, split.id)

    def _emit(self, split: KafkaPartitionSplit, decoded: Decoded[T]) -> Batch[T] | list[T]:
        split.next_offset = decoded.next_offset
        stop = split.stopping_offset
        if decoded.ended:
            self._finish(split, at_stop=False)
        elif split.stop_seen or (stop is not None and split.next_offset >= stop):
            self._finish(split, at_stop=True)
        else:
            self._committer.emitted(split.key, split.next_offset)
            self._lag.update(self._consumer, split)
        if not decoded.values:
            return []
        return Batch(decoded.values, decoded.timestamps, split.id)

    def _finish(self, split: KafkaPartitionSplit, *, at_stop: bool) -> None:
        """Stop reading ``split``: at its stopping offset, or (``at_stop=False``) at an
        end-of-stream element, where the position stays so a restore stops there again."""
        split.finished = True
        stop = split.stopping_offset
        if at_stop and stop is not None and split.next_offset < stop:
            split.next_offset = stop  # only markers or skipped records lay in between
        self._lag.caught_up(split.key)
        self._committer.emitted(split.key, split.next_offset)
        if self._consumer is not None:
            try:
                self._consumer.incremental_unassign([TopicPartition(*split.key)])
            except KafkaException as exc:
                log.debug("%s: unassigning %s: %s", self._name, split.id, exc)
        log.info("%s: partition %s finished at offset %d", self._name, split.id, split.next_offset)

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
            # EARLIEST (< 0) is at or past a stop of 0 too: nothing to read
            if stop is not None and (split.next_offset >= stop or stop == 0):
                split.finished = True
                split.next_offset = max(split.next_offset, stop)
                continue
            active.append(TopicPartition(split.topic, split.partition, split.next_offset))
            self._lag.track(split)
        if active and self._consumer is not None:
            self._consumer.incremental_assign(active)

    def _on_discovered(self, counts: dict[str, int]) -> None:
        new: list[KafkaPartitionSplit] = []
        for topic, count in sorted(self._src.subscription.select(counts).items()):
            before = self._known.get(topic, 0)
            if count <= before:
                continue
            self._known[topic] = count
            log.info("%s: discovered partitions %d..%d of %s", self._name, before, count - 1, topic)
            for p in range(before, count):
                if self._owns(topic, p) and (topic, p) not in self._splits:
                    new.append(KafkaPartitionSplit(topic, p, EARLIEST))
        if new:
            self._discovered.inc(len(new))
            self._add_splits(new)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        if self._bad is not None:
            self._bad.snapshot_state(checkpoint_id)
        self._committer.snapshot(
            checkpoint_id, {s.key: s.next_offset for s in self._splits.values()}
        )
        return [s.state_entry() for s in self._splits.values()]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self._bad is not None:
            self._bad.notify_checkpoint_complete(checkpoint_id)
        self._committer.checkpoint_complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self._committer.checkpoint_aborted(checkpoint_id)
