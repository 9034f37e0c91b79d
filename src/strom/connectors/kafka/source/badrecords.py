"""Bad records — ones the deserializer rejects — and the policy that decides their fate.

Never silent loss (design.md, seed §5): every bad record either fails the job with an error
naming its topic, partition and offset (``"fail"``, the default), is skipped and counted
(``"skip"``, metric ``kafka.bad_records_skipped``, logged), or is sent on as a dead letter
(:class:`DeadLetter`: raw key and value plus the error and origin in headers) to a callable,
any strom ``Sink``, or a Kafka topic. Dead letters are at-least-once: what was sent is flushed
before the source's checkpoint is acknowledged, so a restore never loses one (it may resend).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import Producer

from strom.connectors.base import ReaderContext, Sink, SinkWriter, WriterContext
from strom.connectors.kafka.config import KafkaProperties, without_consumer_settings
from strom.connectors.kafka.errors import KafkaSourceError
from strom.connectors.kafka.source.records import Headers, KafkaRecord
from strom.errors import InvalidJobError
from strom.formats import DeserializationError

__all__ = ["BadRecordHandler", "BadRecordPolicy", "DeadLetter", "DeadLetterRecord"]

log = logging.getLogger("strom.connectors.kafka.source")

#: Header names a dead letter carries besides the original record's headers.
HEADER_ERROR = "strom.error"
HEADER_ORIGIN = "strom.origin"
HEADER_TOPIC = "strom.origin.topic"
HEADER_PARTITION = "strom.origin.partition"
HEADER_OFFSET = "strom.origin.offset"
HEADER_TIMESTAMP = "strom.origin.timestamp"

_LOG_FIRST = 10
_LOG_EVERY = 1000


class BadRecordPolicy(enum.Enum):
    """What happens to a record that cannot be deserialized (see :class:`DeadLetter` too)."""

    FAIL = "fail"
    SKIP = "skip"


class DeadLetterRecord(NamedTuple):
    """A bad record as its dead-letter target receives it."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    """The original headers followed by ``strom.error``, ``strom.origin`` and
    ``strom.origin.{topic,partition,offset,timestamp}``."""
    error: str
    origin: str
    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True)
class DeadLetter:
    """Send bad records to ``target`` (a callable or a strom ``Sink``) or to Kafka ``topic``.

    A dead-letter topic is written with the source's client properties (same cluster and
    credentials) updated by ``properties``; its records keep the original key and value.
    """

    target: Callable[[DeadLetterRecord], Any] | Sink[DeadLetterRecord] | None = None
    topic: str | None = None
    properties: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.target is None) == (self.topic is None):
            raise InvalidJobError("DeadLetter needs exactly one of target= and topic=")
        if self.target is not None and not (isinstance(self.target, Sink) or callable(self.target)):
            raise InvalidJobError(
                f"DeadLetter target must be a callable or a Sink, got {type(self.target).__name__}"
            )

    def __repr__(self) -> str:
        where = f"topic={self.topic!r}" if self.topic is not None else f"target={self.target!r}"
        extra = f", properties={KafkaProperties(self.properties)!r}" if self.properties else ""
        return f"DeadLetter({where}{extra})"


def parse_policy(policy: Any) -> BadRecordPolicy | DeadLetter:
    if isinstance(policy, BadRecordPolicy | DeadLetter):
        return policy
    try:
        return BadRecordPolicy(str(policy).strip().lower())
    except ValueError:
        raise InvalidJobError(
            f"bad_record_policy must be 'fail', 'skip' or a DeadLetter, got {policy!r}"
        ) from None


def dead_letter_of(record: KafkaRecord, error: BaseException) -> DeadLetterRecord:
    text = error.reason if isinstance(error, DeserializationError) else str(error)
    text = f"{type(error).__name__}: {text}"
    origin = record.origin
    headers: Headers = list(record.headers or [])
    headers += [
        (HEADER_ERROR, text.encode("utf-8", "replace")),
        (HEADER_ORIGIN, origin.encode()),
        (HEADER_TOPIC, record.topic.encode()),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TIMESTAMP, str(record.timestamp).encode()),
    ]
    return DeadLetterRecord(
        record.key,
        record.value,
        headers,
        text,
        origin,
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
    )


def as_located_error(record: KafkaRecord, error: BaseException) -> DeserializationError:
    """The error to fail with: a ``DeserializationError`` naming topic, partition, offset."""
    if isinstance(error, DeserializationError):
        error.origin = record.origin
        error.index = None  # the origin says more than a position in an internal batch
        return error
    wrapped = DeserializationError(
        record.value or b"", f"{type(error).__name__}: {error}", record.origin
    )
    wrapped.__cause__ = error
    return wrapped


class BadRecordHandler:
    """Applies the policy for one reader; owns the dead-letter writer or producer."""

    def __init__(
        self, policy: BadRecordPolicy | DeadLetter, ctx: ReaderContext, props: KafkaProperties
    ) -> None:
        self.policy = policy
        self._ctx = ctx
        self._props = props
        group = ctx.metrics.add_group("kafka")
        self._seen = group.counter("bad_records")
        self._skipped = group.counter("bad_records_skipped")
        self._dead = group.counter("bad_records_dead_lettered")
        self._writer: SinkWriter[DeadLetterRecord] | None = None
        self._producer: Producer | None = None
        self._send_errors: list[str] = []

    def handle(self, record: KafkaRecord, error: BaseException) -> None:
        """Deal with one bad record; raises when the policy is to fail."""
        if self.policy is BadRecordPolicy.FAIL:
            located = as_located_error(record, error)
            if located is error:
                raise located
            raise located from error
        self._seen.inc()
        n = self._seen.count
        if isinstance(self.policy, DeadLetter):
            self._send(dead_letter_of(record, error))
            self._dead.inc()
            action = "sent to the dead-letter target"
        else:
            self._skipped.inc()
            action = "skipped"
        if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
            log.warning(
                "bad record %s at %s (%d so far): %s",
                action,
                record.origin,
                n,
                as_located_error(record, error),
            )

    # -- dead letters ---------------------------------------------------------------------

    def _send(self, letter: DeadLetterRecord) -> None:
        policy = self.policy
        assert isinstance(policy, DeadLetter)
        if policy.topic is not None:
            self._produce(policy.topic, letter)
        elif isinstance(policy.target, Sink):
            self._sink_writer(policy.target).write([letter], [letter.timestamp])
        else:
            assert policy.target is not None
            policy.target(letter)

    def _sink_writer(self, sink: Sink[DeadLetterRecord]) -> SinkWriter[DeadLetterRecord]:
        if self._writer is None:
            ctx = self._ctx
            self._writer = sink.create_writer(
                WriterContext(
                    subtask_index=ctx.subtask_index,
                    parallelism=ctx.parallelism,
                    operator_name=f"{ctx.operator_name} (dead letters)",
                    attempt=ctx.attempt,
                    metrics=ctx.metrics.add_group("dead_letters"),
                    processing_time=ctx.processing_time,
                )
            )
            self._writer.open(None)
        return self._writer

    def _produce(self, topic: str, letter: DeadLetterRecord) -> None:
        if self._producer is None:
            policy = self.policy
            assert isinstance(policy, DeadLetter)
            conf = without_consumer_settings(self._props)
            conf.update(policy.properties or {})
            self._producer = Producer(conf)

        def on_delivery(err: ClientError | None, _msg: Any) -> None:
            if err is not None:
                self._send_errors.append(f"{letter.origin}: {err}")

        producer = self._producer
        while True:
            try:
                producer.produce(
                    topic,
                    value=letter.value,
                    key=letter.key,
                    headers=list(letter.headers),
                    timestamp=max(letter.timestamp, 0),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    def flush(self, end_of_input: bool = False) -> None:
        """Make every dead letter so far durable; raise if any could not be delivered."""
        if self._writer is not None:
            self._writer.flush(end_of_input)
        if self._producer is not None:
            left = self._producer.flush(30.0)
            if left:
                self._send_errors.append(f"{left} dead letters not delivered within 30 s")
        if self._send_errors:
            errors, self._send_errors = self._send_errors, []
            raise KafkaSourceError(
                f"{len(errors)} dead letter(s) could not be written, e.g. {errors[0]}"
            )

    def snapshot_state(self, checkpoint_id: int) -> None:
        self.flush()
        if self._writer is not None:
            # A dead-letter sink's own state is not kept: flushed before the ack, it is
            # at-least-once, which is what dead letters promise.
            self._writer.snapshot_state(checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self._writer is not None:
            self._writer.notify_checkpoint_complete(checkpoint_id)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._producer is not None:
            # whatever is still queued goes out; failures here are moot (the task is ending)
            self._producer.flush(5.0)
            self._producer = None
