"""``KafkaSource``: the description of a Kafka source, built once and shipped to subtasks.

Guarantee: exactly-once with checkpoints — offsets are the state, restored on recovery and
rescaled through union list state; without checkpointing a failure restarts from the group's
committed offsets (at-least-once at best). See docs/connectors/kafka.md for every option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, ReaderContext, Source, SourceReader
from strom.connectors.kafka.config import KafkaProperties, normalize_reset_strategy
from strom.connectors.kafka.source.badrecords import BadRecordPolicy, DeadLetter, parse_policy
from strom.connectors.kafka.source.discovery import TopicSubscription
from strom.connectors.kafka.source.offsets import (
    StartupMode,
    StoppingOffsets,
    check_specific_offsets,
)
from strom.connectors.kafka.source.records import KafkaRecordDeserializationSchema
from strom.errors import InvalidJobError
from strom.formats import DeserializationSchema

__all__ = ["KafkaSource"]

T = TypeVar("T")

DEFAULT_DISCOVERY_INTERVAL_MS = 30_000


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class KafkaSource(Source[T], Generic[T]):
    """Records of Kafka topics. Guarantee: exactly-once (with checkpointing).

    Args:
        bootstrap_servers: ``host:port[,host:port...]`` (or ``bootstrap.servers`` in
            ``properties``).
        topics: one topic or a list of topics; or
        topic_pattern: a regex; every matching topic is read, also ones created later
            (with partition discovery on).
        group_id: the consumer group: where committed offsets live (``GROUP_OFFSETS`` start,
            monitoring). Never used for partition assignment.
        startup_mode: where a job without restored state starts: ``StartupMode.EARLIEST``,
            ``LATEST``, ``GROUP_OFFSETS`` (default; partitions without a committed offset follow
            ``auto.offset.reset``, Kafka's default being latest), ``SPECIFIC_OFFSETS`` (with
            ``specific_offsets``; missing partitions fall back to group offsets) or
            ``TIMESTAMP`` (with ``startup_timestamp``, ms).
        deserializer: a value ``DeserializationSchema`` (``SimpleStringSchema``,
            ``JsonSchema``, ...); or
        record_deserializer: a record schema receiving the whole ``KafkaRecord``.
        properties: librdkafka client properties, passed through (SASL, TLS, ...); secret
            values never appear in reprs or logs.
        discovery_interval_ms: how often to look for new partitions and (with a pattern)
            new topics, read from their beginning; ``None`` or ``0`` turns discovery off.
            Always off in bounded mode.
        bounded: a ``StoppingOffsets`` (or ``True`` for ``StoppingOffsets.latest()``) makes
            the source bounded: each partition ends at that exclusive offset.
        commit_offsets_on_checkpoint: commit offsets to the group when a checkpoint
            completes (monitoring only; recovery always uses the checkpoint).
        bad_record_policy: ``"fail"`` (default), ``"skip"`` or a ``DeadLetter(...)``.
        request_timeout_ms: limit for metadata and offset requests made while opening.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.EXACTLY_ONCE}
    )

    def __init__(
        self,
        *,
        bootstrap_servers: str | None = None,
        topics: str | Sequence[str] | None = None,
        topic_pattern: str | re.Pattern[str] | None = None,
        group_id: str | None = None,
        startup_mode: StartupMode | str = StartupMode.GROUP_OFFSETS,
        specific_offsets: Mapping[tuple[str, int], int] | None = None,
        startup_timestamp: int | None = None,
        deserializer: DeserializationSchema[T] | None = None,
        record_deserializer: KafkaRecordDeserializationSchema[T] | Any | None = None,
        properties: Mapping[str, Any] | None = None,
        discovery_interval_ms: int | None = DEFAULT_DISCOVERY_INTERVAL_MS,
        bounded: StoppingOffsets | bool | None = None,
        commit_offsets_on_checkpoint: bool = True,
        bad_record_policy: str | BadRecordPolicy | DeadLetter = BadRecordPolicy.FAIL,
        request_timeout_ms: int = 30_000,
    ) -> None:
        props = KafkaProperties(properties, bootstrap_servers=bootstrap_servers)
        if "bootstrap.servers" not in props:
            raise InvalidJobError("KafkaSource needs bootstrap_servers")
        given_group = props.get("group.id")
        if group_id is not None and given_group is not None and given_group != group_id:
            raise InvalidJobError(
                f"group_id={group_id!r} contradicts the property group.id={given_group!r}"
            )
        self.group_id: str | None = group_id if group_id is not None else given_group
        self.properties = KafkaProperties({k: v for k, v in props.items() if k != "group.id"})

        if (topics is None) == (topic_pattern is None):
            raise InvalidJobError("KafkaSource needs exactly one of topics= and topic_pattern=")
        if isinstance(topics, str):
            topics = [topics]
        if topics is not None and (not topics or not all(isinstance(t, str) for t in topics)):
            raise InvalidJobError(f"topics must be topic names, got {topics!r}")
        try:
            self.subscription = TopicSubscription(topics, topic_pattern)
        except re.error as exc:
            raise InvalidJobError(f"invalid topic_pattern {topic_pattern!r}: {exc}") from exc

        if (deserializer is None) == (record_deserializer is None):
            raise InvalidJobError(
                "KafkaSource needs exactly one of deserializer= and record_deserializer="
            )
        self.schema: Any = deserializer if deserializer is not None else record_deserializer
        self.is_record_schema = record_deserializer is not None
        if not callable(getattr(self.schema, "deserialize", None)):
            raise InvalidJobError(f"{self.schema!r} has no deserialize() method")

        self.startup_mode = StartupMode.parse(startup_mode)
        self.specific_offsets = check_specific_offsets(specific_offsets or {})
        self.startup_timestamp = startup_timestamp
        mode = self.startup_mode
        if mode is StartupMode.SPECIFIC_OFFSETS and not self.specific_offsets:
            raise InvalidJobError("StartupMode.SPECIFIC_OFFSETS needs specific_offsets")
        if mode is StartupMode.TIMESTAMP and startup_timestamp is None:
            raise InvalidJobError("StartupMode.TIMESTAMP needs startup_timestamp (ms)")
        if mode is StartupMode.GROUP_OFFSETS and self.group_id is None:
            raise InvalidJobError(
                "StartupMode.GROUP_OFFSETS (the default) needs group_id; "
                "give one or choose another startup_mode"
            )
        # Where a partition without a committed offset starts (GROUP_OFFSETS), and where the
        # client resumes when a position is out of range (retention deleted the records of a
        # restored offset). Kafka's default is latest; an EARLIEST job resumes at the log start
        # instead of skipping to the end, as Flink's OffsetsInitializer.earliest() does.
        default_reset = "earliest" if mode is StartupMode.EARLIEST else "latest"
        self.reset_strategy = normalize_reset_strategy(
            props.get("auto.offset.reset", default_reset)
        )
        self.auto_commit = self.group_id is not None and _bool(
            props.get("enable.auto.commit", True)
        )

        if bounded is True:
            bounded = StoppingOffsets.latest()
        elif bounded is False:
            bounded = None
        if bounded is not None and not isinstance(bounded, StoppingOffsets):
            raise InvalidJobError(f"bounded must be a StoppingOffsets, got {bounded!r}")
        self.stopping: StoppingOffsets | None = bounded
        self.bounded = bounded is not None
        self.discovery_interval: float | None = None
        if discovery_interval_ms is not None and discovery_interval_ms > 0 and not self.bounded:
            self.discovery_interval = discovery_interval_ms / 1000
        self.commit_offsets_on_checkpoint = commit_offsets_on_checkpoint
        self.bad_record_policy = parse_policy(bad_record_policy)
        if request_timeout_ms <= 0:
            raise InvalidJobError("request_timeout_ms must be positive")
        self.request_timeout_ms = request_timeout_ms

    @property
    def bootstrap_servers(self) -> str:
        return str(self.properties["bootstrap.servers"])

    def create_reader(self, ctx: ReaderContext) -> SourceReader[T]:
        from strom.connectors.kafka.source.reader import KafkaSourceReader

        return KafkaSourceReader(self, ctx)

    def describe(self) -> str:
        return f"Kafka Source ({self.subscription.describe()})"

    def __repr__(self) -> str:
        parts = [
            f"topics={self.subscription.describe()!r}",
            f"group_id={self.group_id!r}",
            f"startup_mode={self.startup_mode.name}",
            f"properties={self.properties!r}",
        ]
        if self.stopping is not None:
            parts.append(f"bounded={self.stopping.describe()!r}")
        return f"KafkaSource({', '.join(parts)})"
