"""Offsets the source asks the broker for while opening: committed, by timestamp, and the end.

The **end** of a partition is where a consumer with the source's ``isolation.level`` sees it
end: the last stable offset (LSO) under ``read_committed`` (librdkafka's default), the high
watermark under ``read_uncommitted``. It is not taken from ListOffsets "latest": some
Kafka-protocol brokers answer that wrongly (Tansu returns the base offset of the last batch plus
one), and librdkafka's cached high watermark is the high watermark under both isolation levels.
Instead a short-lived probe consumer is assigned at the end, reads on until librdkafka signals
end-of-partition for every partition, and takes the offset that signal carries: librdkafka
computes it from the fetch response, as the LSO or the high watermark by isolation level — the
offset a reader of the same isolation level can reach and no further.

Why the LSO under ``read_committed``: records past it belong to transactions not decided yet. A
bounded read stopping at the high watermark would wait for them (up to the transaction timeout)
and, if they abort, for nothing; a ``LATEST`` start at the high watermark would skip them if
they commit. Kafka's own consumer seeks to the LSO for "end" in ``read_committed``, and so does
Flink's ``OffsetsInitializer.latest()`` through ``ListOffsets`` with that isolation level.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from strom.connectors.kafka.errors import KafkaSourceError
from strom.connectors.kafka.source.client import close_consumer
from strom.connectors.kafka.source.split import split_id

__all__ = ["OffsetLookup", "probe_end_offsets"]

TP = tuple[str, int]

# Settings of the probe consumer, over the source's own properties.
_PROBE_SETTINGS: dict[str, Any] = {
    "enable.partition.eof": True,
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    # an empty fetch at the end returns at once instead of after the default 500 ms
    "fetch.wait.max.ms": 10,
    # if "end" ever resolves past the real end, read from the start rather than fail or skip
    "auto.offset.reset": "earliest",
}


def _names(partitions: Iterable[TP]) -> str:
    return ", ".join(split_id(t, p) for t, p in sorted(partitions))


def probe_end_offsets(
    conf: Mapping[str, Any], partitions: Sequence[TP], timeout: float
) -> dict[TP, int]:
    """The end offset of each partition as a consumer with ``conf`` sees it (see the module
    docstring); raises :class:`KafkaSourceError` naming the partitions without an answer."""
    if not partitions:
        return {}
    consumer = Consumer({**conf, **_PROBE_SETTINGS})
    try:
        deadline = time.monotonic() + timeout
        try:
            # metadata first: assigned without it, librdkafka retries the offset lookup of a
            # partition whose leader it does not know yet only after 500 ms
            consumer.list_topics(timeout=timeout)
            consumer.assign([TopicPartition(t, p, OFFSET_END) for t, p in partitions])
        except KafkaException as exc:
            raise KafkaSourceError(
                f"cannot look up the end of {_names(partitions)}: {exc}"
            ) from exc
        wanted = set(partitions)
        ends: dict[TP, int] = {}
        errors: dict[str, str] = {}
        while len(ends) < len(wanted):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = wanted - ends.keys()
                why = f"; errors: {errors}" if errors else ""
                raise KafkaSourceError(
                    f"no end offset for {_names(missing)} within {timeout:g} s{why}"
                )
            msgs: list[Any] = consumer.consume(10_000, min(left, 0.1))
            for msg in msgs:
                err = msg.error()
                if err is None:
                    continue  # records before the end (where "end" resolved short): skipped
                if err.code() == ClientError._PARTITION_EOF:
                    key = (msg.topic(), msg.partition())
                    if key in wanted:
                        ends[key] = msg.offset()
                elif err.fatal():
                    raise KafkaSourceError(f"cannot look up end offsets: {err}")
                else:
                    where = split_id(msg.topic(), msg.partition()) if msg.topic() else "client"
                    errors[where] = str(err)
        return ends
    finally:
        close_consumer(consumer, timeout, "end-offset probe")


class OffsetLookup:
    """Offset requests of one reader's ``open``, on its consumer; ends are probed once per
    partition (a later question about the same partition gets the same answer)."""

    def __init__(self, consumer: Consumer, probe_conf: Mapping[str, Any], timeout: float):
        self._consumer = consumer
        self._probe_conf = probe_conf
        self.timeout = timeout
        self._ends: dict[TP, int] = {}

    def ends(self, partitions: Sequence[TP]) -> dict[TP, int]:
        """Each partition's end (LSO under read_committed, else the high watermark)."""
        missing = [tp for tp in partitions if tp not in self._ends]
        self._ends.update(probe_end_offsets(self._probe_conf, missing, self.timeout))
        return {tp: self._ends[tp] for tp in partitions}

    def committed(self, partitions: Sequence[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions without one are left out."""
        if not partitions:
            return {}
        request = [TopicPartition(t, p) for t, p in partitions]
        try:
            answer = self._consumer.committed(request, timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaSourceError(
                f"cannot fetch committed offsets of {_names(partitions)}: {exc}"
            ) from exc
        failed = {split_id(tp.topic, tp.partition): str(tp.error) for tp in answer if tp.error}
        if failed:
            # never taken for "no committed offset": that would start elsewhere silently
            raise KafkaSourceError(f"cannot fetch committed offsets: {failed}")
        return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}

    def for_timestamp(self, partitions: Sequence[TP], timestamp_ms: int) -> dict[TP, int]:
        """The first offset with a timestamp >= ``timestamp_ms``; partitions with no such
        record are left out."""
        if not partitions:
            return {}
        request = [TopicPartition(t, p, timestamp_ms) for t, p in partitions]
        try:
            answer = self._consumer.offsets_for_times(request, timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaSourceError(
                f"cannot look up offsets for timestamp {timestamp_ms} of {_names(partitions)}: "
                f"{exc}"
            ) from exc
        out: dict[TP, int] = {}
        for tp in answer:
            if tp.error is not None:
                raise KafkaSourceError(
                    f"cannot look up the offset for timestamp {timestamp_ms} of "
                    f"{split_id(tp.topic, tp.partition)}: {tp.error}"
                )
            if tp.offset >= 0:
                out[(tp.topic, tp.partition)] = tp.offset
        return out
