"""Producing batches with confluent-kafka: the part the at-least-once and exactly-once writers
share.

* :class:`ClientLog` receives librdkafka's log lines (instead of stderr), forwards warnings and
  errors to Python logging and picks the producer id and epoch out of the ``eos`` debug lines
  (librdkafka has no API for them; the exactly-once committer needs them after a crash).
* :class:`DeliveryTracker` is the producer's delivery callback. Delivery reports are asked for
  failures only, so success costs nothing; a failure either fails the job at the next
  ``write``/``flush`` (``log_failures_only=False``, the seed's default) or is logged and
  counted.
* :class:`Emitter` produces one batch: partitions chosen (once per batch where the
  partitioner allows), queue-full handled by serving callbacks and trying again, callbacks
  served once per batch.

Transient broker trouble (metadata fetch failure, not-leader, lost connections) is retried
inside librdkafka up to the delivery timeout; only then does a record fail here.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from strom.connectors.kafka.config import REDACTED, is_secret
from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink.partitioners import KafkaPartitioner
from strom.connectors.kafka.sink.records import RecordBuilder, SerializedRecord
from strom.metrics import MetricGroup

__all__ = [
    "FLUSH_MARGIN",
    "ClientLog",
    "DeliveryTracker",
    "Emitter",
    "create_producer",
    "describe_error",
    "flush_all",
    "with_callbacks",
]

log = logging.getLogger("strom.connectors.kafka.sink")
client_log = logging.getLogger("strom.connectors.kafka.sink.client")

_PID = re.compile(r"Acquired PID\{Id:(-?\d+),Epoch:(-?\d+)\}")
# librdkafka's syslog levels → logging levels (7 = debug ... 0 = emergency).
_LEVELS = {7: logging.DEBUG, 6: logging.INFO, 5: logging.INFO, 4: logging.WARNING}
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# How often the failure log repeats under log_failures_only (every record would flood logs).
_LOG_EVERY = 1000
# Partition lists are looked up again after this long, so added partitions get used.
_METADATA_MAX_AGE = 30.0
#: Extra seconds a flush waits beyond the delivery timeout: by then every record has been
#: acknowledged or has failed with a timeout, so a flush only returns with records left when
#: the client is wedged.
FLUSH_MARGIN = 5.0


def describe_error(err: KafkaError) -> str:
    return f"{err.name()}: {err.str()}"


class ClientLog:
    """librdkafka's ``logger``: duck-typed (confluent-kafka calls ``log(level, fmt, *args)``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.producer_id = -1
        self.epoch = -1

    def log(self, level: int, fmt: str, *args: Any) -> None:
        message = fmt % args if args else fmt
        if "Acquired PID" in message:
            found = _PID.search(message)
            if found:
                self.producer_id, self.epoch = int(found.group(1)), int(found.group(2))
        # confluent-kafka hands Python levels already; anything below WARNING is eos chatter
        # the exactly-once writer asked for, not for the user's logs.
        py_level = level if level >= logging.DEBUG else _LEVELS.get(level, logging.ERROR)
        if py_level >= logging.WARNING:
            client_log.log(py_level, "%s: %s", self.name, message)


class DeliveryTracker:
    """Collects failed deliveries; raises or logs according to ``log_failures_only``."""

    def __init__(self, *, log_failures_only: bool, metrics: MetricGroup, where: str) -> None:
        self.log_failures_only = log_failures_only
        self.where = where
        self.failed = metrics.counter("records_failed")
        self.first_error: str | None = None
        self.fatal: str | None = None

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None or err.code() in _PURGED:
            # Purged: dropped by the writer's own close (failover, cancel), not failed; the
            # restore replays these records.
            return
        self.record_failure(msg.topic(), msg.partition(), describe_error(err))

    def on_error(self, err: KafkaError) -> None:
        # Client-wide errors (all brokers down, ...) are transient until they become fatal:
        # librdkafka keeps retrying and reports failed records through on_delivery.
        if err.fatal():
            self.fatal = describe_error(err)
        else:
            client_log.warning("%s: %s", self.where, describe_error(err))

    def record_failure(self, topic: str | None, partition: int | None, error: str) -> None:
        self.failed.inc()
        where = f"topic {topic!r}" + (f" partition {partition}" if partition is not None else "")
        text = f"delivery to {where} failed: {error}"
        if self.log_failures_only:
            n = self.failed.count
            if n == 1 or n % _LOG_EVERY == 0:
                log.error(
                    "%s: %s (%d failed records so far; log_failures_only)", self.where, text, n
                )
        elif self.first_error is None:
            self.first_error = text

    def check(self) -> None:
        """Raise if a send failed (and failures are not only logged) or the client is dead."""
        if self.fatal is not None:
            raise KafkaSinkError(f"{self.where}: fatal producer error: {self.fatal}")
        if self.first_error is not None:
            raise KafkaSinkError(
                f"{self.where}: {self.first_error} ({self.failed.count} failed records); the "
                "job fails over and restarts from its last checkpoint (set "
                "log_failures_only=True to log and count failures instead)"
            )


def flush_all(producer: Producer, tracker: DeliveryTracker, timeout: float, what: str) -> None:
    """Wait until every record handed to ``producer`` is acknowledged or failed."""
    left = producer.flush(timeout)
    tracker.check()
    if left:
        raise KafkaSinkError(
            f"{tracker.where}: {left} records still unacknowledged after {timeout:g} s ({what}); "
            "the broker is unreachable or too slow"
        )


class PartitionCache:
    """Partition ids per topic, from the producer's metadata, refreshed now and then."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._known: dict[str, tuple[float, list[int]]] = {}

    def get(self, producer: Producer, topic: str) -> list[int]:
        now = time.monotonic()
        hit = self._known.get(topic)
        if hit is not None and now - hit[0] < _METADATA_MAX_AGE:
            return hit[1]
        deadline = now + self._timeout
        last = "no answer"
        while True:
            try:
                meta = producer.list_topics(topic, timeout=min(5.0, self._timeout))
                info = meta.topics.get(topic)
                if info is not None and info.error is None and info.partitions:
                    parts = sorted(info.partitions)
                    self._known[topic] = (now, parts)
                    return parts
                last = describe_error(info.error) if info is not None and info.error else "none"
            except KafkaException as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                if hit is not None:  # stale partitions beat failing the job
                    return hit[1]
                raise KafkaSinkError(
                    f"cannot fetch the partitions of topic {topic!r} within "
                    f"{self._timeout:g} s: {last}"
                )
            time.sleep(0.1)


class Emitter:
    """Produces batches of elements with a given producer (one subtask, one thread).

    The hot path: records that need only a value (fixed topic, value schema, no key) and a
    partitioner whose answer does not depend on the record (``per_record = False``: fixed,
    key hash) are produced in one tight loop with a partition chosen once per batch. Arguments
    are passed positionally — ``produce(topic, value, key, partition)`` — which the client
    parses markedly faster than keywords; ``-1`` is its "partition not chosen".
    """

    def __init__(
        self,
        builder: RecordBuilder[Any],
        partitioner: KafkaPartitioner,
        tracker: DeliveryTracker,
        metadata_timeout: float,
        metrics: MetricGroup,
    ) -> None:
        self.builder = builder
        self.partitioner = partitioner
        self.tracker = tracker
        self.partitions = PartitionCache(metadata_timeout)
        self._out = metrics.counter("records_out")

    def emit(self, producer: Producer, values: list[Any], timestamps: list[int] | None) -> None:
        self.tracker.check()
        builder = self.builder
        if builder.simple and (timestamps is None or not builder.write_timestamps):
            topic = builder.topic
            assert topic is not None
            kept, payloads = builder.values(values)
            if self.partitioner.per_record:
                sent = self._values_per_record(producer, topic, kept, payloads)
            else:
                sent = self._values(
                    producer, topic, payloads, self._batch_partition(producer, topic)
                )
        else:
            sent = self._records(producer, builder.build(values, timestamps))
        self._out.count += sent
        # Serves delivery callbacks (and the client's log lines) once per batch.
        producer.poll(0)

    def _batch_partition(self, producer: Producer, topic: str) -> int:
        """The partition of every record of a batch to ``topic`` (``per_record`` False)."""
        part = self.partitioner
        parts = self.partitions.get(producer, topic) if part.needs_partitions else ()
        chosen = part.partition(None, None, None, topic, parts)
        return -1 if chosen is None else chosen

    def _values(self, producer: Producer, topic: str, payloads: list[bytes], partition: int) -> int:
        produce = producer.produce
        failed = 0
        for value in payloads:
            try:
                produce(topic, value, None, partition)
            except BufferError:
                self._produce_when_room(producer, (topic, value, None, partition), {})
            except KafkaException as exc:
                failed += self._failed(topic, partition, exc)
        return len(payloads) - failed

    def _values_per_record(
        self, producer: Producer, topic: str, kept: list[Any], payloads: list[bytes]
    ) -> int:
        part = self.partitioner
        parts = self.partitions.get(producer, topic) if part.needs_partitions else ()
        choose = part.partition
        produce = producer.produce
        failed = 0
        for element, value in zip(kept, payloads, strict=True):
            chosen = choose(element, None, value, topic, parts)
            partition = -1 if chosen is None else chosen
            try:
                produce(topic, value, None, partition)
            except BufferError:
                self._produce_when_room(producer, (topic, value, None, partition), {})
            except KafkaException as exc:
                failed += self._failed(topic, partition, exc)
        return len(payloads) - failed

    def _records(self, producer: Producer, records: list[SerializedRecord]) -> int:
        part = self.partitioner
        per_batch: dict[str, int] = {}  # topic -> partition, for per_record False
        produce = producer.produce
        failed = 0
        for r in records:
            topic, partition = r.topic, r.partition
            if partition is None:
                if part.per_record:
                    parts = self.partitions.get(producer, topic) if part.needs_partitions else ()
                    chosen = part.partition(r.element, r.key, r.value, topic, parts)
                    partition = -1 if chosen is None else chosen
                else:
                    partition = per_batch.get(topic)
                    if partition is None:
                        partition = per_batch[topic] = self._batch_partition(producer, topic)
            args = (topic, r.value, r.key, partition)
            extra: dict[str, Any] = {}
            if r.headers:
                extra["headers"] = r.headers
            if r.timestamp is not None:
                extra["timestamp"] = r.timestamp
            try:
                produce(*args, **extra)
            except BufferError:
                self._produce_when_room(producer, args, extra)
            except KafkaException as exc:
                failed += self._failed(topic, partition, exc)
        return len(records) - failed

    def _produce_when_room(
        self, producer: Producer, args: tuple[Any, ...], extra: dict[str, Any]
    ) -> None:
        # The client's queue is full: serve delivery reports until it has room. Bounded by the
        # delivery timeout, after which queued records fail and make room themselves.
        while True:
            producer.poll(0.05)
            self.tracker.check()
            try:
                producer.produce(*args, **extra)
                return
            except BufferError:
                continue

    def _failed(self, topic: str, partition: int, exc: KafkaException) -> int:
        """A record the client refused outright (unknown partition, too large, ...)."""
        err = exc.args[0] if exc.args else None
        text = describe_error(err) if isinstance(err, KafkaError) else str(exc)
        self.tracker.record_failure(topic, partition if partition >= 0 else None, text)
        self.tracker.check()
        return 1


def create_producer(conf: dict[str, Any], where: str) -> Producer:
    """``Producer(conf)``; a configuration librdkafka refuses raises ``KafkaSinkError`` with
    every secret value of ``conf`` blanked out of the client's message."""
    try:
        return Producer(conf)
    except KafkaException as exc:
        text = str(exc)
        for name, value in conf.items():
            if is_secret(name) and isinstance(value, str) and len(value) >= 3:
                text = text.replace(value, REDACTED)
        raise KafkaSinkError(
            f"{where}: the Kafka client refused its configuration: {text}"
        ) from None


def with_callbacks(conf: dict[str, Any], tracker: DeliveryTracker) -> dict[str, Any]:
    """``conf`` with the tracker as delivery and error callback (a user's own ``error_cb`` is
    called as well). Callbacks run in whichever thread polls the producer: the writer's task
    thread, except right after ``init_transactions`` in a background thread, when only
    ``error_cb`` can fire (no record has been produced yet)."""
    conf["on_delivery"] = tracker.on_delivery
    user_cb = conf.get("error_cb")
    if callable(user_cb):

        def on_error(err: KafkaError) -> None:
            tracker.on_error(err)
            user_cb(err)

        conf["error_cb"] = on_error
    else:
        conf["error_cb"] = tracker.on_error
    return conf
