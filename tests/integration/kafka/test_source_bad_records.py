"""Bad records: fail naming topic/partition/offset, skip and count, or dead-letter."""

from __future__ import annotations

from typing import Any

import pytest
from brokers import Broker

from strom import JobExecutionError, StreamExecutionEnvironment
from strom.connectors.kafka import (
    DeadLetter,
    DeadLetterRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    StoppingOffsets,
)
from strom.formats import DeserializationError, JsonSchema
from strom.testing import SourceReaderHarness, TestingSink

GOOD = [b'{"n": %d}' % i for i in range(6)]


def topic_with_bad_record(broker: Broker) -> str:
    """Partition 0: n=0, n=1, <bad at offset 2>, n=2, ...; partition 1: nothing."""
    topic = broker.create_topic(partitions=2)
    values = [*GOOD[:2], b"{not json", *GOOD[2:]]
    broker.produce(topic, values, partition=0, keys=[b"k%d" % i for i in range(len(values))])
    return topic


def json_source(broker: Broker, topic: str, **options: Any) -> KafkaSource[Any]:
    return KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=options.pop("deserializer", JsonSchema()),
        bounded=StoppingOffsets.at_offsets({(topic, 0): 7, (topic, 1): 0}),
        **options,
    )


def test_fail_is_the_default_and_names_topic_partition_offset(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)
    with (
        SourceReaderHarness(json_source(broker, topic)) as h,
        pytest.raises(DeserializationError) as err,
    ):
        h.poll_all(timeout=10)
    assert err.value.origin == f"topic={topic} partition=0 offset=2"
    assert f"topic={topic} partition=0 offset=2" in str(err.value)
    assert err.value.raw == b"{not json"

    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.from_source(json_source(broker, topic)).sink_to(TestingSink())
    with pytest.raises(JobExecutionError, match=f"topic={topic} partition=0 offset=2"):
        env.execute("bad-record-fails")


def test_skip_counts_and_goes_on(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)
    with SourceReaderHarness(json_source(broker, topic, bad_record_policy="skip")) as h:
        assert [r["n"] for r in h.poll_all(timeout=10)] == list(range(6))
        metrics = h.metrics.snapshot()
    assert [v for k, v in metrics.items() if k.endswith("kafka.bad_records_skipped")] == [1]


class Letters:
    """A dead-letter callable whose list survives the copies the runtime makes."""

    received: list[DeadLetterRecord] = []

    def __call__(self, letter: DeadLetterRecord) -> None:
        Letters.received.append(letter)


def test_dead_letter_to_a_callable(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)
    Letters.received = []
    source = json_source(broker, topic, bad_record_policy=DeadLetter(Letters()))
    with SourceReaderHarness(source) as h:
        assert [r["n"] for r in h.poll_all(timeout=10)] == list(range(6))
    [letter] = Letters.received
    assert (letter.key, letter.value) == (b"k2", b"{not json")
    assert (letter.topic, letter.partition, letter.offset) == (topic, 0, 2)
    assert "invalid JSON" in letter.error
    headers = dict(letter.headers)
    assert headers["strom.origin"] == f"topic={topic} partition=0 offset=2".encode()
    assert headers["strom.origin.offset"] == b"2"
    assert b"invalid JSON" in (headers["strom.error"] or b"")


def test_dead_letter_to_a_sink_in_a_job(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)
    dead: TestingSink[DeadLetterRecord] = TestingSink()
    out: TestingSink[Any] = TestingSink()
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(2)
    env.from_source(json_source(broker, topic, bad_record_policy=DeadLetter(dead))).sink_to(out)
    env.execute("dead-letters-to-sink")
    assert sorted(r["n"] for r in out.results) == list(range(6))
    assert [(d.value, d.offset) for d in dead.results] == [(b"{not json", 2)]


def test_dead_letter_to_a_kafka_topic(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)
    dlq = broker.create_topic(partitions=1, prefix="dlq")
    source = json_source(broker, topic, bad_record_policy=DeadLetter(topic=dlq))
    with SourceReaderHarness(source) as h:
        assert len(h.poll_all(timeout=10)) == 6
        h.snapshot()  # dead letters are flushed before the checkpoint is acknowledged
        [record] = broker.consume_all(dlq, min_records=1)
    assert (record.key, record.value) == (b"k2", b"{not json")
    headers = dict(record.headers)
    assert headers["strom.origin.topic"] == topic.encode()
    assert headers["strom.origin.partition"] == b"0"
    assert b"invalid JSON" in (headers["strom.error"] or b"")


def test_record_schema_errors_are_bad_records_too(broker: Broker) -> None:
    topic = topic_with_bad_record(broker)

    def needs_int(record: Any) -> int:
        return int(record.value.decode().strip('{}"n: '))  # ValueError on the bad one

    source = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        record_deserializer=KafkaRecordDeserializationSchema.of(needs_int),
        bounded=StoppingOffsets.at_offsets({(topic, 0): 7, (topic, 1): 0}),
    )
    with SourceReaderHarness(source) as h, pytest.raises(DeserializationError) as err:
        h.poll_all(timeout=10)
    assert err.value.origin == f"topic={topic} partition=0 offset=2"
    assert isinstance(err.value.__cause__, ValueError)
