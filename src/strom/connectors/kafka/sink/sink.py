"""``KafkaSink``: the description of a Kafka producer sink — options, validation, guarantee.

The writers live next door: ``writer.py`` (guarantees none and at-least-once) and
``exactly_once.py`` (Kafka transactions tied to checkpoints). See ``docs/connectors/kafka.md``
("Sink") for the guarantee table and the transactional id scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.connectors.kafka.config import KafkaProperties
from strom.connectors.kafka.sink.partitioners import (
    FixedPartitioner,
    KafkaPartitioner,
    as_partitioner,
)
from strom.connectors.kafka.sink.records import (
    KeyedSerializationSchema,
    ProducerRecord,
    ProducerRecordSerializationSchema,
    SerializationErrorPolicy,
)
from strom.connectors.kafka.sink.security import SUPPORTED as SUPPORTED_SECURITY
from strom.connectors.kafka.sink.security import unsupported as unsupported_security
from strom.errors import InvalidJobError
from strom.formats import SerializationSchema

__all__ = ["KafkaSink"]

T = TypeVar("T")

# Properties the sink sets itself; a user value would break its guarantee or its callbacks.
_OWNED = ("transactional.id", "on_delivery", "delivery.report.only.error", "logger")
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (value > 0 or (allow_zero and value == 0)) or value != value:
        raise InvalidJobError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


class KafkaSink(Sink[T], Generic[T]):
    """Writes each element as a Kafka record. Guarantee: none, at-least-once (default) or
    exactly-once, as configured.

    Args:
        bootstrap_servers: ``host:port[,host:port...]`` (or ``bootstrap.servers`` in
            ``properties``).
        topic: the topic every record goes to, unless the record names its own.
        serializer: value ``SerializationSchema`` (``SimpleStringSchema``, ``JsonSchema``, ...);
            without one, elements must be ``bytes`` or ``str``.
        key_serializer: a ``SerializationSchema`` or callable giving each element's key.
        record_serializer: instead of the two above, a ``KeyedSerializationSchema``, an object
            with ``serialize(element, timestamp) -> ProducerRecord``, or a callable
            ``element -> ProducerRecord``: key, value, topic, partition, headers, timestamp per
            element (seed 3.15).
        partitioner: ``FixedPartitioner()`` (default: subtask *i* → partition ``i % n``),
            ``KeyHashPartitioner()``, ``RoundRobinPartitioner()`` or a callable
            ``(element, key, value, topic, partitions) -> int | None``.
        write_timestamps: write each element's stream timestamp as the record timestamp
            (seed 3.16); otherwise the client stamps the time of sending.
        delivery_guarantee: ``"none"``, ``"at_least_once"`` or ``"exactly_once"``.
        transactional_id_prefix: required for exactly-once; unique per job (it names the
            job's transactions and a fresh start aborts whatever is left open under it).
        properties: librdkafka producer properties, passed through (SASL/TLS included); secret
            values never appear in reprs or logs.
        log_failures_only: ``False`` (default): a record that cannot be delivered fails the
            job, which restarts from its checkpoint. ``True``: log and count it
            (metric ``records_failed``) and go on — records are lost.
        on_serialization_error: ``"fail"`` (default), ``"skip"`` (log, count
            ``records_skipped``) or a dead-letter callable ``(element, error)``.
        retries: how often the client resends a failed request (``None``: librdkafka's
            default, effectively unbounded within ``delivery_timeout``).
        retry_backoff / retry_backoff_max: seconds between resends (exponential, capped).
        delivery_timeout: seconds a record may take, retries included, before it counts as
            failed (metadata fetch failure, not-leader and lost connections are retried until
            then).
        request_timeout: seconds one produce request may take.
        transaction_timeout: seconds the broker keeps an exactly-once transaction open; a
            job down for longer loses the transactions pending at its last checkpoint (the
            broker aborts them), so make it longer than the worst expected outage and at most
            the broker's ``transaction.max.timeout.ms``.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.NONE, DeliveryGuarantee.AT_LEAST_ONCE, DeliveryGuarantee.EXACTLY_ONCE}
    )

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        topic: str | None = None,
        *,
        serializer: SerializationSchema[T] | None = None,
        key_serializer: SerializationSchema[T] | Callable[[T], bytes | str | None] | None = None,
        record_serializer: ProducerRecordSerializationSchema[T]
        | KeyedSerializationSchema[T]
        | Callable[[T], ProducerRecord]
        | None = None,
        partitioner: KafkaPartitioner | Callable[..., int | None] | None = None,
        write_timestamps: bool = False,
        delivery_guarantee: DeliveryGuarantee | str = DeliveryGuarantee.AT_LEAST_ONCE,
        transactional_id_prefix: str | None = None,
        properties: Mapping[str, Any] | None = None,
        log_failures_only: bool = False,
        on_serialization_error: SerializationErrorPolicy = "fail",
        retries: int | None = None,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
        delivery_timeout: float = 120.0,
        request_timeout: float = 30.0,
        transaction_timeout: float = 900.0,
    ) -> None:
        self.properties = KafkaProperties(properties, bootstrap_servers=bootstrap_servers)
        if "bootstrap.servers" not in self.properties:
            raise InvalidJobError("KafkaSink needs bootstrap_servers (or bootstrap.servers)")
        owned = [k for k in _OWNED if k in self.properties]
        if owned:
            raise InvalidJobError(
                f"KafkaSink sets {', '.join(owned)} itself; remove it from properties"
            )
        if topic is not None and (not isinstance(topic, str) or not topic):
            raise InvalidJobError(f"topic must be a non-empty string, got {topic!r}")
        if record_serializer is not None and (serializer is not None or key_serializer is not None):
            raise InvalidJobError(
                "give either record_serializer or serializer/key_serializer, not both"
            )
        if record_serializer is None and topic is None:
            raise InvalidJobError("KafkaSink needs a topic, or a record_serializer naming topics")
        for name, part in (
            ("serializer", serializer),
            ("key_serializer", key_serializer),
            ("record_serializer", record_serializer),
        ):
            if part is not None and not (
                callable(part) or callable(getattr(part, "serialize", None))
            ):
                raise InvalidJobError(f"{name} must have serialize() or be callable: {part!r}")
        # The source's BadRecordPolicy enum members are accepted for their values.
        on_serialization_error = getattr(on_serialization_error, "value", on_serialization_error)
        if on_serialization_error not in ("fail", "skip") and not callable(on_serialization_error):
            raise InvalidJobError(
                "on_serialization_error must be 'fail', 'skip' or a callable (element, error), "
                f"got {on_serialization_error!r}"
            )
        self.guarantee = DeliveryGuarantee.parse(delivery_guarantee)
        if self.guarantee not in self.supported_guarantees:
            raise InvalidJobError(
                f"KafkaSink supports none, at_least_once and exactly_once, not "
                f"{self.guarantee.value}"
            )
        if self.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            if log_failures_only:
                raise InvalidJobError(
                    "log_failures_only=True cannot be combined with exactly_once: a failed "
                    "record dooms its whole transaction"
                )
            if not transactional_id_prefix:
                raise InvalidJobError(
                    "delivery_guarantee='exactly_once' needs transactional_id_prefix (unique "
                    "per job)"
                )
            if not set(transactional_id_prefix) <= _PREFIX_CHARS:
                raise InvalidJobError(
                    "transactional_id_prefix may only use letters, digits, '.', '_' and '-', "
                    f"got {transactional_id_prefix!r}"
                )
            problem = unsupported_security(self.properties)
            if problem is not None:
                # Caught now rather than at the first restore, which could then not commit.
                raise InvalidJobError(
                    f"delivery_guarantee='exactly_once' cannot be used with {problem}: its "
                    "recovery commits pending transactions with a built-in Kafka protocol "
                    f"client that supports {SUPPORTED_SECURITY}. Connect this sink through a "
                    "listener with one of those, or use delivery_guarantee='at_least_once'"
                )
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise InvalidJobError(f"retries must be an int >= 0 or None, got {retries!r}")
        self.topic = topic
        self.serializer = serializer
        self.key_serializer = key_serializer
        self.record_serializer = record_serializer
        self.partitioner = as_partitioner(
            FixedPartitioner() if partitioner is None else partitioner
        )
        self.write_timestamps = bool(write_timestamps)
        self.transactional_id_prefix = transactional_id_prefix
        self.log_failures_only = bool(log_failures_only)
        self.on_serialization_error = on_serialization_error
        self.retries = retries
        self.retry_backoff = _seconds("retry_backoff", retry_backoff, allow_zero=True)
        self.retry_backoff_max = _seconds("retry_backoff_max", retry_backoff_max)
        self.delivery_timeout = _seconds("delivery_timeout", delivery_timeout)
        self.request_timeout = _seconds("request_timeout", request_timeout)
        self.transaction_timeout = _seconds("transaction_timeout", transaction_timeout)

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        return self.guarantee

    def producer_config(self, *, transactional: bool | None = None) -> dict[str, Any]:
        """librdkafka properties for this sink's producers: the user's, over the sink's
        defaults, plus the settings the guarantee requires. ``transactional`` (default: the
        guarantee is exactly-once) adds what a transactional producer needs."""
        if transactional is None:
            transactional = self.guarantee is DeliveryGuarantee.EXACTLY_ONCE
        defaults: dict[str, Any] = {
            "linger.ms": 5,
            # The Java client's key hash, so keys land where Java producers put them.
            "partitioner": "murmur2_random",
            "message.timeout.ms": int(self.delivery_timeout * 1000),
            "request.timeout.ms": int(self.request_timeout * 1000),
            "retry.backoff.ms": int(self.retry_backoff * 1000),
            "retry.backoff.max.ms": max(
                int(self.retry_backoff_max * 1000), int(self.retry_backoff * 1000)
            ),
        }
        if self.retries is not None:
            defaults["retries"] = self.retries
        if transactional or (
            self.guarantee is not DeliveryGuarantee.NONE and not self.log_failures_only
        ):
            # Resends after a lost connection neither duplicate nor reorder records. Not with
            # log_failures_only: after timed-out records an idempotent producer must drain and
            # bump its epoch, which fails records sent meanwhile as well.
            defaults["enable.idempotence"] = True
        if transactional:
            defaults["transaction.timeout.ms"] = int(self.transaction_timeout * 1000)
        conf = {**defaults, **dict(self.properties)}
        conf["delivery.report.only.error"] = True
        if transactional:
            # librdkafka refuses a transactional producer whose records may outlive the
            # transaction.
            txn_ms = int(conf["transaction.timeout.ms"])
            conf["message.timeout.ms"] = min(int(conf["message.timeout.ms"]), txn_ms)
        return conf

    def create_writer(self, ctx: WriterContext) -> SinkWriter[T]:
        if self.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            from strom.connectors.kafka.sink.exactly_once import TransactionalWriter

            return TransactionalWriter(self, ctx)
        from strom.connectors.kafka.sink.writer import KafkaWriter

        return KafkaWriter(self, ctx)

    def describe(self) -> str:
        target = self.topic if self.topic is not None else "per-record topics"
        return f"Kafka Sink {target} ({self.guarantee.value})"

    def __repr__(self) -> str:
        # Built from the redacted properties only: a password must never reach a log line.
        return (
            f"KafkaSink(topic={self.topic!r}, delivery_guarantee={self.guarantee.value!r}, "
            f"partitioner={self.partitioner!r}, properties={self.properties.redacted()!r})"
        )
