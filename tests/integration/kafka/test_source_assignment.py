"""Partition assignment: Flink's formula bit for bit, and what each subtask really reads."""

from __future__ import annotations

import ctypes

import pytest
from brokers import Broker

from strom.connectors.kafka import KafkaRecordDeserializationSchema, KafkaSource, StoppingOffsets
from strom.connectors.kafka.source import java_string_hashcode, split_owner
from strom.testing import SourceReaderHarness

# String.hashCode() values as Java prints them.
JAVA_HASHCODES = {
    "": 0,
    "a": 97,
    "hello": 99162322,
    "Aa": 2112,
    "BB": 2112,
    "abc": 96354,
    "test": 3556498,
    "Hello World": -862545276,
    "polygenelubricants": -2147483648,  # Integer.MIN_VALUE
    "\U0001f600": 1772899,  # a surrogate pair: hashed as two UTF-16 units
}


@pytest.mark.parametrize(("text", "expected"), JAVA_HASHCODES.items())
def test_java_string_hashcode_matches_java(text: str, expected: int) -> None:
    assert java_string_hashcode(text) == expected


def _reference_owner(topic: str, partition: int, n: int) -> int:
    # KafkaSourceEnumerator.getSplitOwner written with C ints, independently of the module
    h = ctypes.c_int32(0)
    data = topic.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = ctypes.c_int32(31 * h.value + int.from_bytes(data[i : i + 2], "big"))
    start = (ctypes.c_int32(h.value * 31).value & 0x7FFFFFFF) % n
    return (start + partition) % n


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_split_owner_is_flinks_formula(n: int) -> None:
    topics = ["orders", "access-log", "polygenelubricants", "t-0", "ünïcødé", "x" * 40]
    for topic in topics:
        for p in range(12):
            assert split_owner(topic, p, n) == _reference_owner(topic, p, n)


def test_split_owner_known_values() -> None:
    # "test": (3556498 * 31) & 0x7FFFFFFF = 110251438; 110251438 % 4 = 2
    assert [split_owner("test", p, 4) for p in range(5)] == [2, 3, 0, 1, 2]
    # a topic whose hash * 31 overflows: Integer.MIN_VALUE * 31 wraps to MIN_VALUE, masked to 0
    assert [split_owner("polygenelubricants", p, 3) for p in range(4)] == [0, 1, 2, 0]
    assert split_owner("anything", 5, 1) == 0


class _Where(KafkaRecordDeserializationSchema[tuple[str, int]]):
    def deserialize(self, record):  # type: ignore[no-untyped-def,override]
        return (record.topic, record.partition)


@pytest.mark.parametrize("parallelism", [1, 3, 4])
def test_each_subtask_reads_the_partitions_the_formula_gives_it(
    broker: Broker, parallelism: int
) -> None:
    topics = [broker.create_topic(partitions=n, prefix="assign") for n in (1, 3, 5)]
    for topic in topics:
        broker.produce(topic, [b"x"] * (2 * broker.partitions(topic)))
    stops = {(t, p): 2 for t in topics for p in range(broker.partitions(t))}
    source = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topics,
        startup_mode="earliest",
        record_deserializer=_Where(),
        bounded=StoppingOffsets.at_offsets(stops),
    )
    seen: dict[int, set[tuple[str, int]]] = {}
    for subtask in range(parallelism):
        with SourceReaderHarness(source, subtask, parallelism) as h:
            seen[subtask] = set(h.poll_all(timeout=15))
    for subtask, owned in seen.items():
        expected = {tp for tp in stops if split_owner(*tp, parallelism) == subtask}
        assert owned == expected
    assert set().union(*seen.values()) == set(stops)
