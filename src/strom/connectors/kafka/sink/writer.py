"""The Kafka sink writer for the guarantees *none* and *at-least-once*: one idempotent producer
per subtask.

Guarantee:

* **at-least-once** (default): ``flush`` — called before every checkpoint snapshot and at the
  end of input — waits until every record handed to the client is acknowledged by the broker
  (seed 3.17's flush on checkpoint), so a completed checkpoint never covers a lost record. A
  failure after the checkpoint replays the records after it: duplicates, never gaps. With
  idempotence on, the client's own resends after lost connections add no duplicates.
* **none**: no flush on checkpoints (only at the end of input); records in flight when the job
  fails are lost.

A record that cannot be delivered within ``delivery_timeout`` fails the job at the next
``write`` or ``flush`` unless ``log_failures_only`` is set (then it is logged and counted).
The writer keeps no state; if it is restored from an exactly-once sink's checkpoint (the
guarantee was lowered), it still commits the transactions that checkpoint recorded.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from confluent_kafka import Producer

from strom.connectors.base import DeliveryGuarantee, SinkWriter, WriterContext
from strom.connectors.kafka.sink.committer import recover
from strom.connectors.kafka.sink.producer import (
    FLUSH_MARGIN,
    ClientLog,
    DeliveryTracker,
    Emitter,
    create_producer,
    flush_all,
    with_callbacks,
)
from strom.connectors.kafka.sink.records import RecordBuilder
from strom.connectors.kafka.sink.sink import KafkaSink

__all__ = ["KafkaWriter", "make_emitter", "writer_label"]

T = TypeVar("T")


def writer_label(sink: KafkaSink[Any], ctx: WriterContext) -> str:
    target = f"topic {sink.topic!r}" if sink.topic is not None else "per-record topics"
    return f"Kafka sink {ctx.operator_name}[{ctx.subtask_index}] ({target})"


def make_emitter(sink: KafkaSink[Any], ctx: WriterContext, tracker: DeliveryTracker) -> Emitter:
    builder: RecordBuilder[Any] = RecordBuilder(
        topic=sink.topic,
        serializer=sink.serializer,
        key_serializer=sink.key_serializer,
        record_serializer=sink.record_serializer,
        write_timestamps=sink.write_timestamps,
        on_serialization_error=sink.on_serialization_error,
        metrics=ctx.metrics,
        where=writer_label(sink, ctx),
    )
    return Emitter(builder, sink.partitioner, tracker, sink.delivery_timeout, ctx.metrics)


class KafkaWriter(SinkWriter[T], Generic[T]):
    """One subtask's producer for the guarantees none and at-least-once (module docstring)."""

    def __init__(self, sink: KafkaSink[T], ctx: WriterContext) -> None:
        self._sink = sink
        self._ctx = ctx
        self._where = writer_label(sink, ctx)
        self._at_least_once = sink.guarantee is DeliveryGuarantee.AT_LEAST_ONCE
        self._flush_timeout = sink.delivery_timeout + FLUSH_MARGIN
        self._tracker = DeliveryTracker(
            log_failures_only=sink.log_failures_only, metrics=ctx.metrics, where=self._where
        )
        self._emitter = make_emitter(sink, ctx, self._tracker)
        self._producer: Producer | None = None

    def open(self, restored_state: list[Any] | None) -> None:
        if restored_state:
            # Written by an exactly-once KafkaSink (this writer keeps no state): its pending
            # transactions are still owed a commit (their checkpoint is complete), whatever
            # this sink's guarantee is now, and what its crashed attempt left open would block
            # read_committed readers.
            ctx = self._ctx
            recover(
                restored_state,
                self._sink.producer_config(transactional=True),
                ctx.subtask_index,
                ctx.parallelism,
                self._sink.request_timeout,
                self._where,
            )
        self._emitter.builder.open()
        self._sink.partitioner.open(self._ctx.subtask_index, self._ctx.parallelism)
        conf = with_callbacks(self._sink.producer_config(), self._tracker)
        conf["logger"] = ClientLog(self._where)
        self._producer = create_producer(conf, self._where)

    def write(self, values: list[T], timestamps: list[int] | None) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError(f"{self._where}: write() before open() or after close()")
        self._emitter.emit(producer, values, timestamps)

    def flush(self, end_of_input: bool) -> None:
        producer = self._producer
        if producer is None:
            return
        if self._at_least_once or end_of_input:
            flush_all(producer, self._tracker, self._flush_timeout, "flush on checkpoint")
        else:
            producer.poll(0)
            self._tracker.check()

    def close(self) -> None:
        # Records not yet acknowledged were not covered by a checkpoint (flush would have
        # waited for them): the restore replays them, so nothing waits here for a broker
        # that may be the reason the job is failing.
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.flush(0)
