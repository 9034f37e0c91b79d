"""KafkaSource in jobs: topics, lists, patterns, schemas, end of stream, metrics, secrets."""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

import pytest
from brokers import Broker

from strom import StreamExecutionEnvironment
from strom.connectors.kafka import (
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    KafkaSourceError,
    StoppingOffsets,
)
from strom.connectors.kafka.config import REDACTED
from strom.connectors.kafka.source import split_owner
from strom.errors import InvalidJobError
from strom.formats import AbstractDeserializationSchema, JsonSchema, SimpleStringSchema
from strom.testing import SourceReaderHarness, TestingSink


def run_job(source: KafkaSource[Any], parallelism: int = 2) -> list[Any]:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    sink: TestingSink[Any] = TestingSink()
    env.from_source(source).sink_to(sink)
    env.execute("kafka-source-test")
    return sink.results


def test_one_topic_in_a_job(broker: Broker) -> None:
    topic = broker.create_topic(partitions=3)
    broker.produce(topic, [f"r{i}" for i in range(300)])
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        group_id=broker.unique("g"),
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        bounded=True,
    )
    assert sorted(run_job(source)) == sorted(f"r{i}" for i in range(300))


def test_list_of_topics_and_json(broker: Broker) -> None:
    a = broker.create_topic(partitions=2)
    b = broker.create_topic(partitions=1)
    broker.produce(a, [b'{"t": "a", "i": %d}' % i for i in range(50)])
    broker.produce(b, [b'{"t": "b", "i": %d}' % i for i in range(30)])
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=[a, b],
        startup_mode="earliest",
        deserializer=JsonSchema(),
        bounded=True,
    )
    got = run_job(source, parallelism=3)
    assert sorted((r["t"], r["i"]) for r in got) == sorted(
        [("a", i) for i in range(50)] + [("b", i) for i in range(30)]
    )


def test_topic_pattern_reads_every_matching_topic(broker: Broker) -> None:
    prefix = broker.unique("pat")
    matching = [broker.create_topic(f"{prefix}-{i}", partitions=2) for i in range(3)]
    other = broker.create_topic(f"x{prefix}-other", partitions=1)  # no full match
    for i, topic in enumerate([*matching, other]):
        broker.produce(topic, [f"{i}-{j}" for j in range(10)])
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topic_pattern=f"{prefix}-[0-9]+",
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        bounded=True,
    )
    got = run_job(source)
    assert sorted(got) == sorted(f"{i}-{j}" for i in range(3) for j in range(10))


def test_record_schema_sees_key_value_metadata_and_headers(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    # recent: a broker may drop records older than its retention (7 days) at any time
    ts = int(time.time() * 1000) - 60_000
    broker.produce(
        topic,
        [b"v0", b"v1"],
        keys=[b"k0", None],
        timestamps=[ts, ts + 1],
        headers=[("h", b"x")],
    )
    source: KafkaSource[KafkaRecord] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        record_deserializer=KafkaRecordDeserializationSchema.of(lambda r: r),
        bounded=True,
    )
    with SourceReaderHarness(source) as h:
        records = h.poll_all(timeout=10)
        timestamps = h.output_sink.timestamps
    assert [(r.key, r.value, r.offset, r.partition) for r in records] == [
        (b"k0", b"v0", 0, 0),
        (None, b"v1", 1, 0),
    ]
    assert {r.topic for r in records} == {topic}
    assert [r.timestamp for r in records] == [ts, ts + 1]
    assert timestamps == [ts, ts + 1]  # record time is event time
    assert records[0].headers == [("h", b"x")]


class UntilStop(AbstractDeserializationSchema[str]):
    def deserialize(self, message: bytes) -> str:
        return message.decode()

    def is_end_of_stream(self, next_element: str) -> bool:
        return next_element == "STOP"


def test_end_of_stream_stops_that_partition_and_restore_stops_again(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    broker.produce(topic, ["a0", "a1", "STOP", "a3"], partition=0)
    broker.produce(topic, ["b0", "b1", "b2"], partition=1)
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=UntilStop(),
        discovery_interval_ms=None,
    )
    with SourceReaderHarness(source) as h:
        got = h.poll_all(until_end=False)
        for _ in range(20):
            got += h.poll() or []
        snap = h.snapshot()
    assert sorted(got) == ["a0", "a1", "b0", "b1", "b2"]
    assert (topic, 0, 2) in snap  # parked on the marker
    broker.produce(topic, ["b3"], partition=1)
    with SourceReaderHarness(source, restored_state=[snap]) as h:
        again = []
        for _ in range(40):
            again += h.poll() or []
            if again:
                break
    assert again == ["b3"]


def test_end_of_stream_in_every_partition_ends_the_job(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)  # one partition per subtask at parallelism 2
    for p in (0, 1):
        broker.produce(topic, [f"{p}:{i}" for i in range(5)] + ["STOP", "after"], partition=p)
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=UntilStop(),  # discovery stays on: the markers end the job all the same
    )
    assert sorted(run_job(source)) == sorted(f"{p}:{i}" for p in (0, 1) for i in range(5))


def test_end_of_stream_in_bounded_mode_stays_on_the_marker(broker: Broker) -> None:
    """The marker, not the stopping offset behind it, is where the partition stopped: the
    state and the committed offset say so (they used to jump to the stop)."""
    topic = broker.create_topic(partitions=1)
    broker.produce(topic, ["a0", "a1", "STOP", "a3"], partition=0)
    group = broker.unique("g")
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        group_id=group,
        startup_mode="earliest",
        deserializer=UntilStop(),
        bounded=True,
    )
    with SourceReaderHarness(source) as h:
        assert h.poll_all(timeout=10) == ["a0", "a1"]
        assert h.snapshot() == [(topic, 0, 2, 4)]
    assert broker.committed(group, topic) == {0: 2}


def test_subtask_without_partitions_is_idle_and_never_blocks(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
    )
    idle = 1 - split_owner(topic, 0, 2)
    with SourceReaderHarness(source, idle, 2) as h:
        assert h.reader.is_idle()
        start = time.monotonic()
        for _ in range(5):
            assert h.poll() == []
        assert time.monotonic() - start < 5 * 0.05 + 0.5
        assert h.snapshot() == []


def test_lag_metric_per_partition(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    broker.produce(topic, [b"x"] * 200)
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        bounded=StoppingOffsets.at_offsets({(topic, 0): 100, (topic, 1): 100}),
    )
    with SourceReaderHarness(source, max_records=10) as h:
        h.poll_all(max_batches=2)  # 10 records of one partition, or 10 of each
        lags = {
            k.split(".kafka.lag.", 1)[1]: v
            for k, v in h.metrics.snapshot().items()
            if ".kafka.lag." in k
        }
        assert set(lags) == {f"{topic}-0", f"{topic}-1"}
        assert max(lags.values()) >= 80
        h.poll_all(timeout=10)
        snap = h.metrics.snapshot()
    assert all(v == 0 for k, v in snap.items() if ".kafka.lag" in k)


def test_secrets_never_in_repr_or_logs(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    topic = broker.create_topic(partitions=1)
    secret = "hunter2-very-secret"
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        properties={
            "sasl.username": "alice",
            "sasl.password": secret,
            "ssl.key.password": secret,
            "sasl.oauthbearer.client.secret": secret,
        },
    )
    assert secret not in repr(source)
    assert secret not in repr(source.properties)
    assert REDACTED in repr(source)
    assert source.properties["sasl.password"] == secret  # still passed to the client
    assert pickle.loads(pickle.dumps(source)).properties["sasl.password"] == secret
    with pytest.raises(InvalidJobError) as err:
        KafkaSource(
            bootstrap_servers=broker.bootstrap,
            properties={"sasl.password": secret, "bootstrap.servers": "elsewhere:1"},
            topics=topic,
            deserializer=SimpleStringSchema(),
        )
    assert secret not in str(err.value)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("strom").debug("%r", source)
    assert secret not in caplog.text


@pytest.mark.kafka_needs("kcat")
def test_input_written_by_kcat(broker: Broker, kcat: str) -> None:
    topic = broker.create_topic(partitions=1)
    lines = [f'{{"n": {i}}}' for i in range(25)]
    broker.kcat_produce(topic, lines, partition=0)
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=JsonSchema(),
        bounded=True,
    )
    assert sorted(r["n"] for r in run_job(source, parallelism=1)) == list(range(25))


def test_a_missing_topic_of_a_fixed_list_fails_naming_it(broker: Broker) -> None:
    present = broker.create_topic(partitions=1)
    absent = broker.unique("absent")
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=[present, absent],
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
    )
    with pytest.raises(KafkaSourceError, match=rf"topics missing: {absent} \(does not exist\)"):
        SourceReaderHarness(source)


def test_configuration_mistakes_fail_when_built(broker: Broker) -> None:
    common: dict[str, Any] = {"bootstrap_servers": broker.bootstrap}
    with pytest.raises(InvalidJobError, match="exactly one of topics"):
        KafkaSource(**common, deserializer=SimpleStringSchema())
    with pytest.raises(InvalidJobError, match="GROUP_OFFSETS"):
        KafkaSource(**common, topics="t", deserializer=SimpleStringSchema())
    with pytest.raises(InvalidJobError, match="exactly one of deserializer"):
        KafkaSource(**common, topics="t", startup_mode="earliest")
    with pytest.raises(InvalidJobError, match="startup mode"):
        KafkaSource(**common, topics="t", startup_mode="sometime", deserializer=JsonSchema())
    with pytest.raises(InvalidJobError, match="startup_timestamp"):
        KafkaSource(**common, topics="t", startup_mode="timestamp", deserializer=JsonSchema())
