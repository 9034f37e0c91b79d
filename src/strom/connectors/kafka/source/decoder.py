"""Turns a run of consumed messages of one partition into elements, on the hot path.

A value schema decodes the whole run with ``deserialize_batch`` (one call, no per-record
wrapper objects); only when that fails does the run go record by record so the bad record can
be named and handed to the bad-record policy. ``is_end_of_stream`` is called per element only
when the schema defines it.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Generic, TypeVar

from confluent_kafka import Message

from strom.connectors.kafka.source.badrecords import BadRecordHandler
from strom.connectors.kafka.source.records import KafkaRecord, has_end_of_stream

__all__ = ["Decoded", "Decoder"]

T = TypeVar("T")

# unbound C methods: ``map`` over them runs without a Python frame per record
_value_of = Message.value
_timestamp_of = Message.timestamp
_second = itemgetter(1)


def to_record(msg: Any) -> KafkaRecord:
    return KafkaRecord(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.timestamp()[1],
        msg.key(),
        msg.value(),
        msg.headers(),
    )


class Decoded(Generic[T]):
    """Elements of a run, their timestamps, the offset after the last message used, and
    whether the run hit an end-of-stream element (then ``next_offset`` is that element's
    offset, so a restore meets the marker again and stops again)."""

    __slots__ = ("ended", "next_offset", "timestamps", "values")

    def __init__(self, values: list[T], timestamps: list[int], next_offset: int, ended: bool):
        self.values = values
        self.timestamps = timestamps
        self.next_offset = next_offset
        self.ended = ended


class Decoder(Generic[T]):
    def __init__(self, schema: Any, record_schema: bool, bad_records: BadRecordHandler) -> None:
        self._schema = schema
        self._record_schema = record_schema
        self._bad = bad_records
        self._eos = has_end_of_stream(schema)
        self._batch = getattr(schema, "deserialize_batch", None) if not record_schema else None

    def open(self) -> None:
        opener = getattr(self._schema, "open", None)
        if opener is not None:
            opener()

    def decode(self, msgs: list[Any]) -> Decoded[T]:
        values: list[T] | None = None
        offsets: list[int] | None = None  # None: values[i] came from msgs[i]
        if self._batch is not None:
            try:
                values = self._batch(list(map(_value_of, msgs)))
            except Exception:
                values = None  # find and handle the bad record(s) one by one below
        if values is None:
            values, timestamps, offsets = self._one_by_one(msgs)
        else:
            timestamps = list(map(_second, map(_timestamp_of, msgs)))
        if self._eos:
            end = self._schema.is_end_of_stream
            for i, value in enumerate(values):
                if end(value):
                    # the end marker is not emitted, and the partition stops at it
                    at = offsets[i] if offsets is not None else msgs[i].offset()
                    return Decoded(values[:i], timestamps[:i], at, True)
        return Decoded(values, timestamps, msgs[-1].offset() + 1, False)

    def _one_by_one(self, msgs: list[Any]) -> tuple[list[T], list[int], list[int]]:
        values: list[T] = []
        timestamps: list[int] = []
        offsets: list[int] = []
        schema, record_schema, bad = self._schema, self._record_schema, self._bad
        for msg in msgs:
            record = to_record(msg)
            try:
                value = schema.deserialize(record if record_schema else record.value)
            except Exception as exc:
                bad.handle(record, exc)  # raises under the "fail" policy
                continue
            values.append(value)
            timestamps.append(record.timestamp)
            offsets.append(record.offset)
        return values, timestamps, offsets
