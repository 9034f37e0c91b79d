"""Serialization contracts shared by sources, sinks and formats.

A source hands raw ``bytes`` (a Kafka record value, a line of a file) to a
:class:`DeserializationSchema`; a sink turns elements back into ``bytes`` with a
:class:`SerializationSchema`. Both are structural protocols, so any object with the right
methods fits; :class:`AbstractDeserializationSchema` and :class:`AbstractSerializationSchema`
are optional base classes that supply the defaults (``open``, ``is_end_of_stream`` and the
batch forms).

The engine calls the batch forms on its hot path. When one record of a batch is bad, the
schema raises :class:`DeserializationError` (or :class:`SerializationError`) with ``index``
set to the position of the bad record, so the caller can tell which offset or line it was,
set ``origin`` and re-raise, or skip it and carry on with the rest of the batch.
"""

from __future__ import annotations

import reprlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "MAX_PREVIEW_BYTES",
    "AbstractDeserializationSchema",
    "AbstractSerializationSchema",
    "DeserializationError",
    "DeserializationSchema",
    "SerializationError",
    "SerializationSchema",
]

T = TypeVar("T")

#: How much of a bad payload an error message shows. Records can be megabytes; logs and
#: exception messages must stay readable, and the full payload stays available as ``raw``.
MAX_PREVIEW_BYTES = 64

# reprlib bounds the work as well as the output: repr() of a million-element list is slow
# before it is long.
_REPR = reprlib.Repr()
_REPR.maxstring = MAX_PREVIEW_BYTES
_REPR.maxother = MAX_PREVIEW_BYTES
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 8
_REPR.maxdict = 6
_MAX_REPR_CHARS = 2 * MAX_PREVIEW_BYTES


def _shorten(text: str, limit: int = _MAX_REPR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _bounded_repr(value: object) -> str:
    try:
        text = _REPR.repr(value)
    except Exception as exc:
        # reprlib already survives a raising __repr__ on plain objects; this covers the rest,
        # because a broken repr must never hide the error being reported.
        return f"<{type(value).__name__} object, repr() failed: {type(exc).__name__}>"
    return _shorten(text)


def _payload_preview(raw: bytes) -> str:
    head = bytes(raw[:MAX_PREVIEW_BYTES])
    if len(raw) > MAX_PREVIEW_BYTES:
        return f"payload ({len(raw)} bytes, first {MAX_PREVIEW_BYTES} shown): {head!r}..."
    return f"payload ({len(raw)} bytes): {head!r}"


def _location(origin: str | None, index: int | None) -> str:
    parts = []
    if origin:
        parts.append(origin)
    if index is not None:
        parts.append(f"batch index {index}")
    return f" at {', '.join(parts)}" if parts else ""


class DeserializationError(ValueError):
    """A record could not be turned from bytes into an element.

    ``raw`` is the whole payload (for dead-letter queues); the message shows only its first
    :data:`MAX_PREVIEW_BYTES` bytes. Schemas do not know where a record came from, so the
    connector fills in ``origin`` (``"topic=t partition=1 offset=5"``, ``"file=x line=3"``)
    and re-raises; the message is rendered from the attributes, so it picks that up.
    ``index`` is the record's position when the error came from a batch call.
    """

    def __init__(
        self,
        raw: bytes,
        reason: str,
        origin: str | None = None,
        *,
        index: int | None = None,
    ) -> None:
        # args holds only the reason so that repr() and pickling never drag the payload along.
        super().__init__(reason)
        self.raw = raw
        self.reason = reason
        self.origin = origin
        self.index = index

    def __str__(self) -> str:
        return (
            f"cannot deserialize record{_location(self.origin, self.index)}: {self.reason}; "
            f"{_payload_preview(self.raw)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.raw, self.reason), {"origin": self.origin, "index": self.index})


class SerializationError(ValueError):
    """An element could not be turned into bytes.

    ``element`` is the offending element; the message shows a bounded repr of it
    (``element_repr``). A pickled error (one sent between processes) keeps ``element_repr``
    but not ``element``, which may not be picklable at all.
    """

    def __init__(
        self,
        element: object,
        reason: str,
        origin: str | None = None,
        *,
        index: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.element = element
        self.element_repr = _bounded_repr(element)
        self.reason = reason
        self.origin = origin
        self.index = index

    def __str__(self) -> str:
        return (
            f"cannot serialize element{_location(self.origin, self.index)}: {self.reason}; "
            f"element: {self.element_repr}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"element_repr": self.element_repr, "origin": self.origin, "index": self.index}
        return (type(self), (None, self.reason), state)


@runtime_checkable
class DeserializationSchema(Protocol[T]):
    """Turns raw record bytes into elements of type ``T``."""

    def open(self) -> None:
        """Called once per parallel instance before the first record; acquire resources here."""

    def deserialize(self, message: bytes) -> T:
        """Decode one record; raise :class:`DeserializationError` if it is malformed."""

    def deserialize_batch(self, messages: list[bytes]) -> list[T]:
        """Decode records in order; on a bad one raise with ``index`` set to its position."""

    def is_end_of_stream(self, next_element: T) -> bool:
        """Return True if ``next_element`` marks the end of a bounded stream."""


@runtime_checkable
class SerializationSchema(Protocol[T]):
    """Turns elements of type ``T`` into record bytes."""

    def open(self) -> None:
        """Called once per parallel instance before the first element; acquire resources here."""

    def serialize(self, element: T) -> bytes:
        """Encode one element; raise :class:`SerializationError` if it cannot be encoded."""

    def serialize_batch(self, elements: list[T]) -> list[bytes]:
        """Encode elements in order; on a bad one raise with ``index`` set to its position."""


def _index_of(item: object, items: list[Any], *, by_equality: bool) -> int | None:
    for i, candidate in enumerate(items):
        if candidate is item:
            return i
    if by_equality:
        # Records before the bad one decoded fine, so with a deterministic schema the first
        # equal payload is the one that failed.
        for i, candidate in enumerate(items):
            if candidate == item:
                return i
    return None


class AbstractDeserializationSchema(DeserializationSchema[T], ABC):
    """Base class for deserialization schemas: implement :meth:`deserialize`, override the
    rest only when there is something to gain."""

    def open(self) -> None:
        return None

    @abstractmethod
    def deserialize(self, message: bytes) -> T:
        raise NotImplementedError

    def deserialize_batch(self, messages: list[bytes]) -> list[T]:
        try:
            return [self.deserialize(m) for m in messages]
        except DeserializationError as err:
            if err.index is None:
                err.index = _index_of(err.raw, messages, by_equality=True)
            raise

    def is_end_of_stream(self, next_element: T) -> bool:
        return False


class AbstractSerializationSchema(SerializationSchema[T], ABC):
    """Base class for serialization schemas: implement :meth:`serialize`, override the rest
    only when there is something to gain."""

    def open(self) -> None:
        return None

    @abstractmethod
    def serialize(self, element: T) -> bytes:
        raise NotImplementedError

    def serialize_batch(self, elements: list[T]) -> list[bytes]:
        try:
            return [self.serialize(e) for e in elements]
        except SerializationError as err:
            if err.index is None:
                # Equality on arbitrary elements may be costly or meaningless; identity only.
                err.index = _index_of(err.element, elements, by_equality=False)
            raise


def _first_deserialization_failure(
    deserialize: Callable[[bytes], object], messages: list[bytes]
) -> DeserializationError | None:
    """Re-run a batch record by record after its fast path failed, to find the bad record."""
    for i, message in enumerate(messages):
        try:
            deserialize(message)
        except DeserializationError as err:
            err.index = i
            return err
    return None


def _first_serialization_failure(
    serialize: Callable[[Any], bytes], elements: list[Any]
) -> SerializationError | None:
    """Re-run a batch element by element after its fast path failed, to find the bad one."""
    for i, element in enumerate(elements):
        try:
            serialize(element)
        except SerializationError as err:
            err.index = i
            return err
    return None
