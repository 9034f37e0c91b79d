"""Partition discovery while running: grown topics and new topics matching the pattern."""

from __future__ import annotations

import time
from typing import Any

import pytest
from brokers import Broker

from strom.connectors.kafka import KafkaRecordDeserializationSchema, KafkaSource
from strom.connectors.kafka.source import split_owner
from strom.testing import SourceReaderHarness

Where = tuple[str, int, bytes | None]


def where_source(broker: Broker, **options: Any) -> KafkaSource[Where]:
    return KafkaSource(
        bootstrap_servers=broker.bootstrap,
        startup_mode="earliest",
        record_deserializer=KafkaRecordDeserializationSchema.of(
            lambda r: (r.topic, r.partition, r.value)
        ),
        **options,
    )


def poll_until(
    harnesses: list[SourceReaderHarness[Where]], count: int, timeout: float = 10.0
) -> list[list[Where]]:
    got: list[list[Where]] = [[] for _ in harnesses]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < count and time.monotonic() < deadline:
        for i, h in enumerate(harnesses):
            got[i] += h.poll() or []
    return got


@pytest.mark.kafka_needs("create_partitions")
def test_added_partitions_are_read_from_earliest_by_their_owner(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    broker.produce(topic, [b"old"], partition=0)
    source = where_source(broker, topics=topic, discovery_interval_ms=100)
    with (
        SourceReaderHarness(source, 0, 2) as h0,
        SourceReaderHarness(source, 1, 2) as h1,
    ):
        assert sum(map(len, poll_until([h0, h1], 1))) == 1
        broker.add_partitions(topic, 4)
        for p in (1, 2, 3):  # written before any reader knows the partition exists
            broker.produce(topic, [f"new-{p}".encode()], partition=p)
        got = poll_until([h0, h1], 3)
        for subtask, records in enumerate(got):
            expected = {p for p in (1, 2, 3) if split_owner(topic, p, 2) == subtask}
            assert {p for _t, p, _v in records} == expected
        assert sorted(v for records in got for _t, _p, v in records) == [
            b"new-1",
            b"new-2",
            b"new-3",
        ]
        metrics = h0.metrics.snapshot() | h1.metrics.snapshot()
    assert sum(v for k, v in metrics.items() if k.endswith("partitions_discovered")) == 3


def test_new_topics_matching_the_pattern_are_picked_up(broker: Broker) -> None:
    prefix = broker.unique("disc")
    first = broker.create_topic(f"{prefix}-a", partitions=1)
    broker.produce(first, [b"a"])
    source = where_source(broker, topic_pattern=rf"{prefix}-\w+", discovery_interval_ms=100)
    with SourceReaderHarness(source) as h:
        assert [v for _t, _p, v in poll_until([h], 1)[0]] == [b"a"]
        second = broker.create_topic(f"{prefix}-b", partitions=2)
        broker.create_topic(f"other-{prefix}-c", partitions=1)
        broker.produce(second, [b"b0", b"b1", b"b2"])
        got = poll_until([h], 3)[0]
        assert sorted(v for _t, _p, v in got) == [b"b0", b"b1", b"b2"]
        assert {t for t, _p, _v in got} == {second}
        assert sorted(e[:2] for e in h.snapshot()) == [(first, 0), (second, 0), (second, 1)]


def test_discovery_can_be_switched_off(broker: Broker) -> None:
    prefix = broker.unique("nodisc")
    first = broker.create_topic(f"{prefix}-a", partitions=1)
    source = where_source(broker, topic_pattern=rf"{prefix}-\w+", discovery_interval_ms=None)
    with SourceReaderHarness(source) as h:
        second = broker.create_topic(f"{prefix}-b", partitions=1)
        broker.produce(second, [b"b"])
        broker.produce(first, [b"a"])
        got = poll_until([h], 5, timeout=1.0)[0]
    assert [v for _t, _p, v in got] == [b"a"]
