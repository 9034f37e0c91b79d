"""Plain-text records: each record is one string in a fixed encoding (PyFlink's
``SimpleStringSchema``)."""

from __future__ import annotations

import codecs

from .base import (
    AbstractDeserializationSchema,
    AbstractSerializationSchema,
    DeserializationError,
    SerializationError,
    _first_deserialization_failure,
    _first_serialization_failure,
)

__all__ = ["SimpleStringSchema"]


class SimpleStringSchema(AbstractDeserializationSchema[str], AbstractSerializationSchema[str]):
    """Decodes record bytes to ``str`` and encodes ``str`` back, strictly: bytes that are not
    valid in ``encoding`` raise :class:`DeserializationError` rather than being replaced."""

    def __init__(self, encoding: str = "utf-8") -> None:
        # An unknown encoding should fail when the job is built, not on the first record.
        codecs.lookup(encoding)
        self.encoding = encoding

    def __repr__(self) -> str:
        return f"SimpleStringSchema(encoding={self.encoding!r})"

    def deserialize(self, message: bytes) -> str:
        try:
            # str(..., encoding) also accepts bytearray and memoryview payloads.
            return str(message, self.encoding)
        except UnicodeDecodeError as exc:
            raise DeserializationError(
                message, f"invalid {self.encoding} at byte {exc.start}: {exc.reason}"
            ) from exc

    def deserialize_batch(self, messages: list[bytes]) -> list[str]:
        encoding = self.encoding
        try:
            return [str(m, encoding) for m in messages]
        except UnicodeDecodeError:
            err = _first_deserialization_failure(self.deserialize, messages)
            if err is None:
                raise
            raise err from err.__cause__

    def serialize(self, element: str) -> bytes:
        try:
            return element.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise SerializationError(
                element,
                f"character {exc.object[exc.start : exc.end]!r} at index {exc.start} "
                f"cannot be encoded in {self.encoding}: {exc.reason}",
            ) from exc
        except AttributeError as exc:
            # The annotation says str, but elements come from untyped user functions.
            value: object = element
            if isinstance(value, str):
                raise
            raise SerializationError(value, f"expected str, got {type(value).__name__}") from exc

    def serialize_batch(self, elements: list[str]) -> list[bytes]:
        encoding = self.encoding
        try:
            return [e.encode(encoding) for e in elements]
        except (UnicodeEncodeError, AttributeError):
            err = _first_serialization_failure(self.serialize, elements)
            if err is None:
                raise
            raise err from err.__cause__
