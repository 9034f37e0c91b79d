"""Serialization schemas: how sources turn record bytes into elements and sinks turn elements
back into bytes. Independent of the engine, so connectors and user code can share them."""

from .base import (
    AbstractDeserializationSchema,
    AbstractSerializationSchema,
    DeserializationError,
    DeserializationSchema,
    SerializationError,
    SerializationSchema,
)
from .csv import CsvSchema
from .json import JsonSchema
from .string import SimpleStringSchema

__all__ = [
    "AbstractDeserializationSchema",
    "AbstractSerializationSchema",
    "CsvSchema",
    "DeserializationError",
    "DeserializationSchema",
    "JsonSchema",
    "SerializationError",
    "SerializationSchema",
    "SimpleStringSchema",
]
