"""How the rolling ``FileSink`` turns records into bytes: a ``SerializationSchema`` or a plain
callable, followed by a record delimiter. A record that cannot be encoded fails the job with
a ``SerializationError`` that shows the record and names the sink and subtask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.formats import SerializationError, SerializationSchema, SimpleStringSchema

__all__ = ["Encoder", "make_encoder"]


class Encoder:
    """Encodes batches with a ``SerializationSchema`` (its batch form) or a callable."""

    def __init__(
        self, schema: SerializationSchema[Any] | None, fn: Callable[[Any], bytes] | None
    ) -> None:
        self.schema = schema
        self.fn = fn

    def open(self) -> None:
        if self.schema is not None:
            self.schema.open()

    def encode(self, values: list[Any], delimiter: bytes, origin: str) -> list[bytes]:
        if self.schema is not None:
            out = self._with_schema(self.schema, values, origin)
        else:
            assert self.fn is not None
            out = self._with_callable(self.fn, values, origin)
        if delimiter:
            return [b + delimiter for b in out]
        return out

    @staticmethod
    def _with_schema(
        schema: SerializationSchema[Any], values: list[Any], origin: str
    ) -> list[bytes]:
        try:
            out = schema.serialize_batch(values)
        except SerializationError as e:
            e.origin = e.origin or origin
            raise
        except Exception as e:
            # A schema that does not follow the contract: find and name the record ourselves.
            for index, value in enumerate(values):
                try:
                    schema.serialize(value)
                except Exception as inner:
                    raise SerializationError(
                        value, f"{type(inner).__name__}: {inner}", origin, index=index
                    ) from inner
            raise SerializationError(values, f"{type(e).__name__}: {e}", origin) from e
        if len(out) != len(values):
            raise SerializationError(
                values, f"serialize_batch returned {len(out)} records for {len(values)}", origin
            )
        return out

    @staticmethod
    def _with_callable(fn: Callable[[Any], bytes], values: list[Any], origin: str) -> list[bytes]:
        out: list[bytes] = []
        for index, value in enumerate(values):
            try:
                data: object = fn(value)  # typed bytes, but user code may return anything
            except SerializationError as e:
                e.origin = e.origin or origin
                e.index = index if e.index is None else e.index
                raise
            except Exception as e:
                raise SerializationError(
                    value, f"encoder raised {type(e).__name__}: {e}", origin, index=index
                ) from e
            if isinstance(data, bytes):
                out.append(data)
            elif isinstance(data, bytearray | memoryview):
                out.append(bytes(data))
            else:
                raise SerializationError(
                    value, f"encoder returned {type(data).__name__}, not bytes", origin, index=index
                )
        return out


class _StringSchema(SimpleStringSchema):
    """``str(element)`` in UTF-8, like Flink's ``SimpleStringEncoder``: the default encoder."""

    def serialize(self, element: Any) -> bytes:
        return super().serialize(element if isinstance(element, str) else str(element))

    def serialize_batch(self, elements: list[Any]) -> list[bytes]:
        return super().serialize_batch([e if isinstance(e, str) else str(e) for e in elements])


def make_encoder(encoder: SerializationSchema[Any] | Callable[[Any], bytes] | None) -> Encoder:
    if encoder is None:
        return Encoder(_StringSchema(), None)
    if isinstance(encoder, SerializationSchema):
        return Encoder(encoder, None)
    if callable(encoder):
        return Encoder(None, encoder)
    raise TypeError(
        f"FileSink: encoder must be a SerializationSchema or a callable element -> bytes, "
        f"got {type(encoder).__name__}"
    )
