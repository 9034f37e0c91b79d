"""What the Kafka source hands to deserialization, and the schemas that can read it.

Two ways to turn Kafka records into elements (seed §3.7–3.8):

* a value :class:`~strom.formats.DeserializationSchema` (``SimpleStringSchema``,
  ``JsonSchema``, ...) that sees only the value bytes — the fast path, decoded a batch at a time;
* a :class:`KafkaRecordDeserializationSchema` that sees the whole :class:`KafkaRecord` — key,
  value, topic, partition, offset, timestamp and headers (the seed's keyed schema
  ``deserialize(key, value, topic, partition, offset)``, with timestamp and headers added).

Either may define ``is_end_of_stream(element)``: the first element for which it returns True
is not emitted and its partition stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from strom.formats import AbstractDeserializationSchema, DeserializationSchema

__all__ = [
    "KafkaRecord",
    "KafkaRecordDeserializationSchema",
    "RecordDeserializer",
    "has_end_of_stream",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Headers = list[tuple[str, bytes | None]]


class KafkaRecord(NamedTuple):
    """One consumed Kafka record, as a record schema sees it (a tuple: cheap and picklable)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch (create or log-append time, as the topic says); -1 if none."""
    key: bytes | None
    value: bytes | None
    headers: Headers | None

    @property
    def origin(self) -> str:
        """Where the record came from, as error messages and dead letters name it."""
        return f"topic={self.topic} partition={self.partition} offset={self.offset}"


@runtime_checkable
class RecordDeserializer(Protocol[T_co]):
    """Anything with ``deserialize(record: KafkaRecord)``; ``is_end_of_stream`` is optional."""

    def deserialize(self, record: KafkaRecord) -> T_co: ...


class KafkaRecordDeserializationSchema(ABC, Generic[T]):
    """Base class for record schemas: implement :meth:`deserialize`.

    Raise :class:`~strom.formats.DeserializationError` (any exception counts) for a bad
    record; the source's bad-record policy decides what happens next.
    """

    def open(self) -> None:
        """Called once per subtask before the first record."""

    @abstractmethod
    def deserialize(self, record: KafkaRecord) -> T: ...

    def is_end_of_stream(self, next_element: T) -> bool:
        return False

    @staticmethod
    def value_only(schema: DeserializationSchema[T]) -> KafkaRecordDeserializationSchema[T]:
        """A record schema that decodes only the value with ``schema``."""
        return _ValueOnly(schema)

    @staticmethod
    def of(fn: Callable[[KafkaRecord], T]) -> KafkaRecordDeserializationSchema[T]:
        """A record schema from a function of the record."""
        return _FromFunction(fn)


class _ValueOnly(KafkaRecordDeserializationSchema[T]):
    def __init__(self, schema: DeserializationSchema[T]) -> None:
        self.schema = schema

    def open(self) -> None:
        self.schema.open()

    def deserialize(self, record: KafkaRecord) -> T:
        return self.schema.deserialize(record.value)  # type: ignore[arg-type]

    def is_end_of_stream(self, next_element: T) -> bool:
        return self.schema.is_end_of_stream(next_element)

    def __repr__(self) -> str:
        return f"KafkaRecordDeserializationSchema.value_only({self.schema!r})"


class _FromFunction(KafkaRecordDeserializationSchema[T]):
    def __init__(self, fn: Callable[[KafkaRecord], T]) -> None:
        self.fn = fn

    def deserialize(self, record: KafkaRecord) -> T:
        return self.fn(record)

    def __repr__(self) -> str:
        return f"KafkaRecordDeserializationSchema.of({self.fn!r})"


def has_end_of_stream(schema: Any) -> bool:
    """Whether ``schema`` overrides ``is_end_of_stream`` with something that can say True.

    Calling it per record costs a Python call each; the inherited "never" needs no calls.
    """
    if isinstance(schema, _ValueOnly):
        return has_end_of_stream(schema.schema)
    method = getattr(type(schema), "is_end_of_stream", None)
    return method is not None and method not in _NEVER_ENDS


_NEVER_ENDS = (
    AbstractDeserializationSchema.is_end_of_stream,
    KafkaRecordDeserializationSchema.is_end_of_stream,
)
