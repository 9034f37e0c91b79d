"""The test brokers themselves: fixtures start them, helpers round-trip data, probes answer."""

from __future__ import annotations

import pytest
from brokers import CAPABILITIES, Broker


def test_produce_and_consume_all_round_trip(broker: Broker) -> None:
    topic = broker.create_topic(partitions=3)
    values = [f"v{i}".encode() for i in range(30)]
    broker.produce(topic, values, keys=[b"k"] * 30, headers=[("h", b"1")])
    records = broker.consume_all(topic, min_records=30)
    assert sorted(r.value or b"" for r in records) == sorted(values)
    assert {r.partition for r in records} == {0, 1, 2}
    assert all(r.key == b"k" and r.headers == (("h", b"1"),) for r in records)


def test_commit_and_committed(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    group = broker.unique("g")
    assert broker.committed(group, topic) == {}
    broker.commit(group, {(topic, 0): 5, (topic, 1): 7})
    assert broker.committed(group, topic) == {0: 5, 1: 7}


@pytest.mark.kafka_needs("kcat")
def test_kcat_round_trip(broker: Broker, kcat: str) -> None:
    topic = broker.create_topic(partitions=1)
    broker.kcat_produce(topic, ["a", "b", "c"], partition=0)
    assert broker.values(topic, min_records=3) == [b"a", b"b", b"c"]
    assert [m["payload"] for m in broker.kcat_consume(topic)] == ["a", "b", "c"]


def test_capability_probes_answer(broker: Broker) -> None:
    table = broker.capabilities()
    assert set(table) == set(CAPABILITIES)
    if broker.name == "noida":
        # docs/test-servers.md: noida-db is the faithful one for these
        assert table["create_partitions"]
        assert table["transactions"]
        assert table["list_offsets_latest"]
        assert table["offsets_for_times"]


@pytest.mark.kafka_needs("create_partitions")
def test_needs_marker_skips_where_missing(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    broker.add_partitions(topic, 3)
    assert broker.partitions(topic) == 3
