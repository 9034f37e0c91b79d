"""JSON records, one JSON document per record, encoded and decoded with orjson."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .base import (
    AbstractDeserializationSchema,
    AbstractSerializationSchema,
    DeserializationError,
    SerializationError,
    _first_deserialization_failure,
    _first_serialization_failure,
)

__all__ = ["JsonSchema"]


class JsonSchema(AbstractDeserializationSchema[Any], AbstractSerializationSchema[Any]):
    """Decodes a JSON document to Python objects (dict, list, str, int, float, bool, None)
    and encodes such objects back to UTF-8 JSON.

    ``sort_keys`` makes the output deterministic (useful for keys and for diffing);
    ``default`` is called by orjson for objects it cannot encode natively and must return
    something it can; ``append_newline`` ends each document with ``\\n`` (JSON Lines files).
    orjson rejects some inputs the stdlib ``json`` module accepts: NaN and Infinity in
    documents, integers outside 64 bits and non-``str`` dict keys when encoding.
    """

    def __init__(
        self,
        sort_keys: bool = False,
        default: Callable[[Any], Any] | None = None,
        append_newline: bool = False,
    ) -> None:
        self.sort_keys = sort_keys
        self.default = default
        self.append_newline = append_newline
        self._option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (
            orjson.OPT_APPEND_NEWLINE if append_newline else 0
        )

    def __repr__(self) -> str:
        return (
            f"JsonSchema(sort_keys={self.sort_keys!r}, default={self.default!r}, "
            f"append_newline={self.append_newline!r})"
        )

    def deserialize(self, message: bytes) -> Any:
        try:
            return orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise DeserializationError(message, f"invalid JSON: {exc}") from exc

    def deserialize_batch(self, messages: list[bytes]) -> list[Any]:
        loads = orjson.loads
        try:
            return [loads(m) for m in messages]
        except orjson.JSONDecodeError:
            err = _first_deserialization_failure(self.deserialize, messages)
            if err is None:
                raise
            raise err from err.__cause__

    def serialize(self, element: Any) -> bytes:
        try:
            return orjson.dumps(element, default=self.default, option=self._option)
        except orjson.JSONEncodeError as exc:
            raise SerializationError(element, f"cannot encode as JSON: {exc}") from exc

    def serialize_batch(self, elements: list[Any]) -> list[bytes]:
        dumps, default, option = orjson.dumps, self.default, self._option
        try:
            return [dumps(e, default=default, option=option) for e in elements]
        except orjson.JSONEncodeError:
            err = _first_serialization_failure(self.serialize, elements)
            if err is None:
                raise
            raise err from err.__cause__
