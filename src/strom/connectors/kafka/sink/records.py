"""What the Kafka sink writes: elements become ``ProducerRecord`` s (seed 3.14–3.16).

Three ways to say how an element becomes a record, from simplest to most flexible:

* a fixed ``topic`` plus a value ``SerializationSchema`` (``SimpleStringSchema``,
  ``JsonSchema``, any schema) and optionally a key serializer;
* a :class:`KeyedSerializationSchema` (seed 3.15's keyed schema: key, value and target topic
  per element);
* a record serializer returning a full :class:`ProducerRecord` per element (key, value, topic,
  partition, headers, timestamp).

:class:`RecordBuilder` turns a batch of elements into produce arguments and applies the
bad-record policy to elements that cannot be serialized: ``"fail"`` (raise, the default),
``"skip"`` (log and count) or a dead-letter callable. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

from strom.formats import SerializationError, SerializationSchema
from strom.metrics import MetricGroup

__all__ = [
    "Headers",
    "KeyedSerializationSchema",
    "ProducerRecord",
    "ProducerRecordSerializationSchema",
    "RecordBuilder",
    "SerializationErrorPolicy",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
log = logging.getLogger("strom.connectors.kafka.sink")
_LOG_EVERY = 1000  # skipped records: the first 10 and every 1000th are logged

Headers: TypeAlias = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]
SerializationErrorPolicy: TypeAlias = (
    Literal["fail", "skip"] | Callable[[Any, SerializationError], object]
)
"""``"fail"`` raises, ``"skip"`` logs and counts, a callable gets ``(element, error)`` (a
dead-letter hand-off) and the element is counted as dead-lettered."""


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    """One record to produce. ``None`` fields are filled in by the sink: ``topic`` from the
    sink's topic, ``partition`` by its partitioner, ``timestamp`` from the stream (only with
    ``write_timestamps=True``) or by the client (the time of sending)."""

    key: bytes | str | None
    value: bytes | str | None
    topic: str | None = None
    partition: int | None = None
    headers: Headers | None = None
    timestamp: int | None = None


@runtime_checkable
class ProducerRecordSerializationSchema(Protocol[T_contra]):
    """Turns an element (and its stream timestamp, ``None`` when it has none) into a record."""

    def serialize(self, element: T_contra, timestamp: int | None) -> ProducerRecord: ...


class KeyedSerializationSchema(ABC, Generic[T]):
    """Seed 3.15's keyed schema: key, value and target topic per element.

    ``get_target_topic`` returning ``None`` means the sink's default topic.
    """

    def open(self) -> None:
        """Called once per sink subtask before the first element."""

    def serialize_key(self, element: T) -> bytes | None:
        return None

    @abstractmethod
    def serialize_value(self, element: T) -> bytes | None: ...

    def get_target_topic(self, element: T) -> str | None:
        return None

    def serialize(self, element: T, timestamp: int | None) -> ProducerRecord:
        return ProducerRecord(
            self.serialize_key(element),
            self.serialize_value(element),
            self.get_target_topic(element),
        )


def _as_bytes(data: object) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"expected bytes, str or None, got {type(data).__name__}")


def _raw_value(element: Any) -> bytes:
    """The value when no value schema is given: bytes as is, str as UTF-8."""
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode()
    raise SerializationError(
        element,
        f"no serializer given and the element is {type(element).__name__}, not bytes or str "
        "(pass serializer=JsonSchema() or another SerializationSchema)",
    )


def _header_list(headers: Headers | None) -> list[tuple[str, bytes | None]] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), _as_bytes(value)) for name, value in items]


class SerializedRecord:
    """One record ready to produce (a serialized :class:`ProducerRecord` with its element);
    ``partition`` is ``None`` until the partitioner has chosen."""

    __slots__ = ("element", "headers", "key", "partition", "timestamp", "topic", "value")

    def __init__(
        self,
        element: Any,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes | None]] | None,
        timestamp: int | None,
    ) -> None:
        self.element = element
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = partition
        self.headers = headers
        self.timestamp = timestamp


class RecordBuilder(Generic[T]):
    """Serializes batches of elements for one sink subtask and applies the bad-record policy.

    :meth:`values` is the fast path (fixed topic, no key, no record serializer): the values
    only, with one ``serialize_batch`` call per batch when the schema has it. Everything else
    goes through :meth:`build`.
    """

    def __init__(
        self,
        *,
        topic: str | None,
        serializer: SerializationSchema[T] | None,
        key_serializer: SerializationSchema[T] | Callable[[T], bytes | str | None] | None,
        record_serializer: ProducerRecordSerializationSchema[T]
        | KeyedSerializationSchema[T]
        | Callable[[T], ProducerRecord]
        | None,
        write_timestamps: bool,
        on_serialization_error: SerializationErrorPolicy,
        metrics: MetricGroup,
        where: str,
    ) -> None:
        self.topic = topic
        self._serializer = serializer
        self._key = key_serializer
        self._record = record_serializer
        self.write_timestamps = write_timestamps
        self._policy = on_serialization_error
        self._where = where
        self._skipped = metrics.counter("records_skipped")
        self._dead = metrics.counter("records_dead_lettered")

    @property
    def simple(self) -> bool:
        """True when records only need a value: fixed topic, value schema, no key."""
        return self._record is None and self._key is None

    def open(self) -> None:
        for part in (self._serializer, self._key, self._record):
            opener = getattr(part, "open", None)
            if callable(opener):
                opener()

    # -- the fast path -----------------------------------------------------------------------

    def values(self, elements: list[T]) -> tuple[list[T], list[bytes]]:
        """Serialize the values of ``elements``; returns the elements kept and their bytes
        (elements dropped by the bad-record policy are left out of both)."""
        schema = self._serializer
        if schema is None:
            try:
                return elements, [_raw_value(e) for e in elements]
            except SerializationError:
                return self._one_by_one(elements, _raw_value)
        batch = getattr(schema, "serialize_batch", None)
        try:
            if callable(batch):
                return elements, batch(elements)
            return elements, [schema.serialize(e) for e in elements]
        except SerializationError:
            return self._one_by_one(elements, schema.serialize)

    def _one_by_one(
        self, elements: list[T], serialize: Callable[[Any], bytes]
    ) -> tuple[list[T], list[bytes]]:
        kept: list[T] = []
        out: list[bytes] = []
        for i, element in enumerate(elements):
            try:
                data = serialize(element)
            except SerializationError as err:
                self.bad(element, err, i)
                continue
            kept.append(element)
            out.append(data)
        return kept, out

    # -- the general path --------------------------------------------------------------------

    def build(self, elements: list[T], timestamps: list[int] | None) -> list[SerializedRecord]:
        out: list[SerializedRecord] = []
        for i, element in enumerate(elements):
            ts = timestamps[i] if timestamps is not None else None
            try:
                out.append(self._one(element, ts))
            except SerializationError as err:
                self.bad(element, err, i)
        return out

    def _one(self, element: T, ts: int | None) -> SerializedRecord:
        stream_ts = ts if self.write_timestamps else None
        rec = self._record
        if rec is not None:
            try:
                serialize = getattr(rec, "serialize", None)
                record = serialize(element, ts) if callable(serialize) else rec(element)  # type: ignore[operator]
                if not isinstance(record, ProducerRecord):
                    raise TypeError(
                        f"the record serializer returned {type(record).__name__}, "
                        "not a ProducerRecord"
                    )
                topic = record.topic or self.topic
                if topic is None:
                    raise ValueError("the record names no topic and the sink has no default topic")
                return SerializedRecord(
                    element,
                    topic,
                    _as_bytes(record.key),
                    _as_bytes(record.value),
                    record.partition,
                    _header_list(record.headers),
                    record.timestamp if record.timestamp is not None else stream_ts,
                )
            except SerializationError:
                raise
            except Exception as exc:
                # A user serializer's own bug is a bad record too: it names the element.
                raise SerializationError(element, f"{type(exc).__name__}: {exc}") from exc
        assert self.topic is not None  # the sink checks: no record serializer → a topic
        schema = self._serializer
        value = _raw_value(element) if schema is None else schema.serialize(element)
        key: bytes | None = None
        if self._key is not None:
            ser = getattr(self._key, "serialize", None)
            try:
                raw = ser(element) if callable(ser) else self._key(element)  # type: ignore[operator]
                key = _as_bytes(raw)
            except SerializationError:
                raise
            except Exception as exc:
                raise SerializationError(element, f"key: {type(exc).__name__}: {exc}") from exc
        return SerializedRecord(element, self.topic, key, value, None, None, stream_ts)

    # -- bad records -------------------------------------------------------------------------

    def bad(self, element: Any, err: SerializationError, index: int | None = None) -> None:
        """Apply the bad-record policy to ``element`` (raises under ``"fail"``)."""
        if err.origin is None:
            err.origin = self._where
        if err.index is None:
            err.index = index
        policy = self._policy
        if policy == "fail":
            raise err
        if policy == "skip":
            self._skipped.inc()
            n = self._skipped.count
            if n <= 10 or n % _LOG_EVERY == 0:  # a stream of bad records must not flood logs
                log.warning("Kafka sink skips a record it cannot serialize (%d so far): %s", n, err)
            return
        assert callable(policy)
        policy(element, err)
        self._dead.inc()
