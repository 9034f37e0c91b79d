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
from strom.connectors.kafka.sink.committer import (
    Committer,
    abort_lingering_lineages,
    split_restored,
)
from strom.connectors.kafka.sink.producer import (
    ClientLog,
    DeliveryTracker,
    Emitter,
    flush_all,
    with_callbacks,
)
from strom.connectors.kafka.sink.records import RecordBuilder
from strom.connectors.kafka.sink.sink import KafkaSink
from strom.connectors.kafka.sink.transactions import KafkaTransaction

__all__ = ["KafkaWriter", "make_emitter"]

T = TypeVar("T")

# Extra seconds flush waits beyond the delivery timeout: by then every record has either been
# acknowledged or failed with a timeout, so flush only returns early with records left when
# the client is wedged.
_FLUSH_MARGIN = 5.0


def where(sink: KafkaSink[Any], ctx: WriterContext) -> str:
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
        where=where(sink, ctx),
    )
    return Emitter(builder, sink.partitioner, tracker, sink.delivery_timeout, ctx.metrics)


class KafkaWriter(SinkWriter[T], Generic[T]):
    """One subtask's producer for the guarantees none and at-least-once (module docstring)."""

    def __init__(self, sink: KafkaSink[T], ctx: WriterContext) -> None:
        self._sink = sink
        self._ctx = ctx
        self._where = where(sink, ctx)
        self._at_least_once = sink.guarantee is DeliveryGuarantee.AT_LEAST_ONCE
        self._flush_timeout = sink.delivery_timeout + _FLUSH_MARGIN
        self._tracker = DeliveryTracker(
            log_failures_only=sink.log_failures_only, metrics=ctx.metrics, where=self._where
        )
        self._emitter = make_emitter(sink, ctx, self._tracker)
        self._producer: Producer | None = None

    def open(self, restored_state: list[Any] | None) -> None:
        txns, marks = split_restored(restored_state)
        if txns or marks:
            # Written by an exactly-once KafkaSink: its pending transactions are still owed a
            # commit (their checkpoint is complete), whatever this sink's guarantee is now,
            # and what its crashed attempt left open would block read_committed readers.
            conf = self._sink.producer_config()
            timeout = self._sink.request_timeout
            committer = Committer(conf, timeout, self._where)
            for entry in txns or ():
                txn = entry[1] if isinstance(entry, tuple | list) and len(entry) == 2 else None
                if isinstance(txn, KafkaTransaction):
                    committer.commit(txn)
            if marks:
                ctx = self._ctx
                abort_lingering_lineages(
                    marks, conf, ctx.subtask_index, ctx.parallelism, timeout, self._where
                )
        self._emitter.builder.open()
        self._sink.partitioner.open(self._ctx.subtask_index, self._ctx.parallelism)
        conf = with_callbacks(self._sink.producer_config(), self._tracker)
        conf["logger"] = ClientLog(self._where)
        self._producer = Producer(conf)

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
