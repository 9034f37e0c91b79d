"""KafkaSink against real brokers: records, partitioners, at-least-once, bad records."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from brokers import Broker
from sink_helpers import Pace, checkpointed_env, ints

from strom import JobExecutionError
from strom.connectors.kafka.sink import (
    FixedPartitioner,
    KafkaSink,
    KeyHashPartitioner,
    ProducerRecord,
    RoundRobinPartitioner,
)
from strom.formats import JsonSchema, SerializationError, SimpleStringSchema
from strom.testing import SinkWriterHarness, fail_once_at

# recent: noida-db deletes records with old timestamps within seconds (its retention)
BASE_TS = int(time.time() * 1000)


def sink_metric(result_metrics: dict[str, dict[str, Any]], name: str) -> int:
    return sum(
        int(m.get(name, 0)) for op, m in result_metrics.items() if op.startswith("Kafka Sink")
    )


def test_fixed_topic_json_values(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(partitions=2)
    env = checkpointed_env(tmp_path, 2)
    data = [{"n": i, "api": f"/a{i % 3}"} for i in range(500)]
    env.from_collection(data).sink_to(
        KafkaSink(broker.bootstrap, topic, serializer=JsonSchema(sort_keys=True))
    )
    result = env.execute("fixed-topic")
    got = broker.values(topic, min_records=500)
    assert sorted(got, key=lambda v: v or b"") == sorted(
        JsonSchema(sort_keys=True).serialize(d) for d in data
    )
    assert sink_metric(result.metrics, "records_out") == 500


def per_record(element: int) -> ProducerRecord:
    return ProducerRecord(
        key=f"k{element % 4}",
        value=str(element),
        topic=None if element % 2 else f"odd-out-{element % 2}",
        headers=[("n", str(element).encode()), ("src", b"test")],
        timestamp=BASE_TS + element,
    )


def test_per_record_topics_keys_headers_timestamps(broker: Broker) -> None:
    default = broker.create_topic(partitions=2)
    other = broker.create_topic(partitions=1)

    def serialize(element: int) -> ProducerRecord:
        rec = per_record(element)
        return ProducerRecord(
            rec.key,
            rec.value,
            other if element % 2 == 0 else None,
            None,
            rec.headers,
            rec.timestamp,
        )

    sink: KafkaSink[int] = KafkaSink(
        broker.bootstrap, default, record_serializer=serialize, partitioner=KeyHashPartitioner()
    )
    with SinkWriterHarness(sink) as h:
        h.write(range(40))
        h.end_input()
    evens = broker.consume_all(other, min_records=20)
    odds = broker.consume_all(default, min_records=20)
    assert sorted(int(r.value or b"") for r in evens) == list(range(0, 40, 2))
    assert sorted(int(r.value or b"") for r in odds) == list(range(1, 40, 2))
    for r in evens + odds:
        n = int(r.value or b"")
        assert r.key == f"k{n % 4}".encode()
        assert r.headers == (("n", str(n).encode()), ("src", b"test"))
        assert r.timestamp == BASE_TS + n
    # key hash: one key, one partition
    by_key: dict[bytes | None, set[int]] = {}
    for r in odds:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


@pytest.mark.kafka_needs("kcat")
def test_kcat_reads_what_the_sink_wrote(broker: Broker, kcat: str) -> None:
    topic = broker.create_topic(partitions=1)
    sink: KafkaSink[str] = KafkaSink(
        broker.bootstrap,
        topic,
        serializer=SimpleStringSchema(),
        key_serializer=lambda s: s.upper(),
        write_timestamps=True,
    )
    # recent timestamps: noida-db's retention deletes records with old ones within seconds
    now = int(time.time() * 1000)
    with SinkWriterHarness(sink) as h:
        h.write(["alpha", "beta", "gamma"], [now + 1, now + 2, now + 3])
        h.end_input()
    seen = broker.kcat_consume(topic)
    assert [(m["key"], m["payload"], m["ts"]) for m in seen] == [
        ("ALPHA", "alpha", now + 1),
        ("BETA", "beta", now + 2),
        ("GAMMA", "gamma", now + 3),
    ]


def partitions_by_subtask(
    broker: Broker, topic: str, partitioner: Any, n: int
) -> dict[int, set[int]]:
    for sub in range(n):
        sink: KafkaSink[str] = KafkaSink(broker.bootstrap, topic, partitioner=partitioner())
        with SinkWriterHarness(sink, sub, n) as h:
            h.write([f"{sub}:{i}" for i in range(6)])
            h.end_input()
    out: dict[int, set[int]] = {}
    for r in broker.consume_all(topic, min_records=6 * n):
        out.setdefault(int((r.value or b"").split(b":")[0]), set()).add(r.partition)
    return out


def test_fixed_partitioner_subtask_i_to_partition_i_mod_n(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    assert partitions_by_subtask(broker, topic, FixedPartitioner, 3) == {0: {0}, 1: {1}, 2: {0}}


def test_round_robin_partitioner_uses_every_partition(broker: Broker) -> None:
    topic = broker.create_topic(partitions=3)
    assert partitions_by_subtask(broker, topic, RoundRobinPartitioner, 2) == {
        0: {0, 1, 2},
        1: {0, 1, 2},
    }


def test_custom_partitioner(broker: Broker) -> None:
    topic = broker.create_topic(partitions=3)

    def last(element: str, key: Any, value: Any, topic: str, parts: Any) -> int:
        return int(parts[-1])

    got = partitions_by_subtask(broker, topic, lambda: last, 2)
    assert got == {0: {2}, 1: {2}}


def test_at_least_once_flush_on_checkpoint_makes_records_durable(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    sink: KafkaSink[str] = KafkaSink(broker.bootstrap, topic, properties={"linger.ms": 1000})
    with SinkWriterHarness(sink) as h:
        h.write([str(i) for i in range(100)])
        h.snapshot(1)  # flush: every record acknowledged before the checkpoint is
        # linger.ms=1000 would still hold them in the client without the flush
        assert len(broker.values(topic, timeout=5)) == 100


def test_at_least_once_injected_failure_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(partitions=2)
    env = checkpointed_env(tmp_path, 2, restarts=2)
    (
        env.from_collection([str(i) for i in range(3000)])
        .map(Pace())
        .map(fail_once_at(700))
        .sink_to(KafkaSink(broker.bootstrap, topic))
    )
    env.execute("alo-failure")
    got = ints(broker.values(topic, min_records=3000))
    assert set(got) == set(range(3000))  # duplicates allowed, gaps not


def test_serialization_failure_fails_the_job_naming_the_record(
    broker: Broker, tmp_path: Path
) -> None:
    topic = broker.create_topic(partitions=1)
    env = checkpointed_env(tmp_path, 1)
    env.from_collection([{"ok": 1}, {"bad": {1, 2}}]).sink_to(
        KafkaSink(broker.bootstrap, topic, serializer=JsonSchema())
    )
    with pytest.raises(JobExecutionError) as info:
        env.execute("bad-record")
    text = str(info.value)
    assert "cannot serialize" in text
    assert topic in text
    assert "{1, 2}" in text


def test_serialization_failure_skip_and_dead_letter(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(partitions=1)
    dead: list[Any] = []
    for policy in ("skip", lambda element, err: dead.append(element)):
        env = checkpointed_env(tmp_path / str(len(dead)), 1)
        env.from_collection([{"n": 1}, {"n": {2}}, {"n": 3}]).sink_to(
            KafkaSink(
                broker.bootstrap, topic, serializer=JsonSchema(), on_serialization_error=policy
            )
        )
        result = env.execute("skip")
        counted = sink_metric(result.metrics, "records_skipped") + sink_metric(
            result.metrics, "records_dead_lettered"
        )
        assert counted == 1
    assert dead == [{"n": {2}}]
    assert broker.values(topic, min_records=4) == [b'{"n":1}', b'{"n":3}'] * 2


def test_unknown_serializer_error_is_not_swallowed(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    sink: KafkaSink[Any] = KafkaSink(broker.bootstrap, topic)
    with SinkWriterHarness(sink) as h, pytest.raises(SerializationError, match="not bytes or str"):
        h.write([3])


class CountingFixed(FixedPartitioner):
    calls = 0

    def partition(self, *args: Any) -> int | None:
        CountingFixed.calls += 1
        return super().partition(*args)


@pytest.mark.parametrize("keyed", [False, True])
def test_a_fixed_partition_is_chosen_once_per_batch(broker: Broker, keyed: bool) -> None:
    topic = broker.create_topic(partitions=3)
    CountingFixed.calls = 0
    sink: KafkaSink[str] = KafkaSink(
        broker.bootstrap,
        topic,
        partitioner=CountingFixed(),
        key_serializer=(lambda s: s[:1]) if keyed else None,
    )
    with SinkWriterHarness(sink, 1, 2) as h:
        for b in range(3):
            h.write([f"{b}-{i}" for i in range(100)])
        h.end_input()
    # the hot path asks once per batch, not once per record
    assert CountingFixed.calls == 3
    records = broker.consume_all(topic, min_records=300)
    assert {r.partition for r in records} == {1}
    assert len(records) == 300


def test_records_purged_when_the_writer_closes_are_not_delivery_failures(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # A writer closed mid-stream (failover, cancel) drops what the client still holds; the
    # restore replays it. That is not a failed delivery: no count, no error log.
    topic = broker.create_topic(partitions=1)
    sink: KafkaSink[str] = KafkaSink(
        broker.bootstrap, topic, log_failures_only=True, properties={"linger.ms": 60_000}
    )
    caplog.set_level(logging.ERROR, logger="strom.connectors.kafka.sink")
    h = SinkWriterHarness(sink)
    h.write(["a", "b", "c"])
    failed = h.writer._tracker.failed  # type: ignore[attr-defined]
    h.close()
    assert failed.count == 0
    assert "delivery to" not in caplog.text
