"""Start positions, bounded mode, and offsets committed back to Kafka (seed §3.10, §3.13)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from brokers import Broker, start_tansu
from confluent_kafka import Producer, TopicPartition

from strom.connectors.kafka import KafkaSource, KafkaSourceError, StartupMode, StoppingOffsets
from strom.formats import SimpleStringSchema
from strom.testing import SourceReaderHarness


def source(broker: Broker, topic: str, **options: Any) -> KafkaSource[str]:
    options.setdefault("deserializer", SimpleStringSchema())
    options.setdefault("discovery_interval_ms", None)
    return KafkaSource(bootstrap_servers=broker.bootstrap, topics=topic, **options)


def read_available(h: SourceReaderHarness[str], expect: int, timeout: float = 10.0) -> list[str]:
    """Poll an unbounded reader until ``expect`` records came, then a little longer."""
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += h.poll() or []
    for _ in range(5):  # anything beyond ``expect`` would show up now
        out += h.poll() or []
    return out


def two_partitions(broker: Broker, per_partition: int = 10) -> str:
    topic = broker.create_topic(partitions=2)
    for p in (0, 1):
        broker.produce(topic, [f"{p}:{i}" for i in range(per_partition)], partition=p)
    return topic


def all_of(per_partition: int, start: dict[int, int] | None = None) -> list[str]:
    start = start or {}
    return sorted(f"{p}:{i}" for p in (0, 1) for i in range(start.get(p, 0), per_partition))


# -- start positions ----------------------------------------------------------------------


def test_earliest(broker: Broker) -> None:
    topic = two_partitions(broker)
    with SourceReaderHarness(source(broker, topic, startup_mode=StartupMode.EARLIEST)) as h:
        assert sorted(read_available(h, 20)) == all_of(10)


def test_latest_reads_only_new_records(broker: Broker) -> None:
    topic = two_partitions(broker)
    with SourceReaderHarness(source(broker, topic, startup_mode="latest")) as h:
        assert read_available(h, 0) == []
        broker.produce(topic, ["0:new"], partition=0)
        assert read_available(h, 1) == ["0:new"]


def test_group_offsets_with_fallback_to_auto_offset_reset(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    broker.commit(group, {(topic, 0): 7})  # partition 1 has no committed offset
    src = source(broker, topic, group_id=group, properties={"auto.offset.reset": "earliest"})
    assert src.startup_mode is StartupMode.GROUP_OFFSETS  # the default
    with SourceReaderHarness(src) as h:
        assert sorted(read_available(h, 13)) == all_of(10, {0: 7})


def test_group_offsets_fall_back_to_latest_by_default(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    broker.commit(group, {(topic, 1): 4})
    with SourceReaderHarness(source(broker, topic, group_id=group)) as h:
        assert sorted(read_available(h, 6)) == sorted(f"1:{i}" for i in range(4, 10))


@pytest.mark.parametrize("spelling", ["error", "none"])  # librdkafka's and Kafka's
def test_group_offsets_reset_error_fails_without_committed_offset(
    broker: Broker, spelling: str
) -> None:
    topic = two_partitions(broker)
    src = source(
        broker, topic, group_id=broker.unique("g"), properties={"auto.offset.reset": spelling}
    )
    with pytest.raises(KafkaSourceError, match=f"no committed offset for {topic}-0, {topic}-1"):
        SourceReaderHarness(src)


_OUT_OF_RANGE: dict[str, bool] = {}


def needs_out_of_range_answers(broker: Broker) -> None:
    """Skip unless fetching past the end gets OFFSET_OUT_OF_RANGE from this broker (Tansu
    answers with no records instead, so the client never resets)."""
    if broker.bootstrap not in _OUT_OF_RANGE:
        topic = broker.create_topic(partitions=1, prefix="probe-oor")
        broker.produce(topic, [b"x"], partition=0)
        consumer = broker.consumer(**{"auto.offset.reset": "error"})
        try:
            consumer.assign([TopicPartition(topic, 0, 100)])
            deadline = time.monotonic() + 5
            answered = False
            while not answered and time.monotonic() < deadline:
                answered = any(m.error() is not None for m in consumer.consume(10, 0.1))
        finally:
            consumer.close()
        _OUT_OF_RANGE[broker.bootstrap] = answered
    if not _OUT_OF_RANGE[broker.bootstrap]:
        pytest.skip(f"{broker.name} does not answer a fetch past the end with OFFSET_OUT_OF_RANGE")


def test_out_of_range_position_with_reset_error_fails_naming_the_partition(
    broker: Broker,
) -> None:
    needs_out_of_range_answers(broker)
    topic = two_partitions(broker)
    src = source(
        broker, topic, group_id=broker.unique("g"), properties={"auto.offset.reset": "none"}
    )
    state = [[(topic, 0, 100), (topic, 1, 10)]]  # partition 0 was recreated, say
    with (
        SourceReaderHarness(src, restored_state=state) as h,
        pytest.raises(KafkaSourceError, match=f"offset 100 of {topic}-0 is out of range"),
    ):
        read_available(h, 1)


def test_earliest_job_resumes_at_the_log_start_when_its_position_is_out_of_range(
    broker: Broker,
) -> None:
    """As Flink's OffsetsInitializer.earliest(): an EARLIEST job resets to the log start, not
    to Kafka's default "latest", which would skip everything up to the end."""
    needs_out_of_range_answers(broker)
    topic = two_partitions(broker)
    src = source(broker, topic, startup_mode="earliest")
    with SourceReaderHarness(src, restored_state=[[(topic, 0, 100), (topic, 1, 10)]]) as h:
        assert sorted(read_available(h, 10)) == [f"0:{i}" for i in range(10)]


def test_specific_offsets_missing_partitions_use_group_offsets(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    broker.commit(group, {(topic, 0): 1, (topic, 1): 8})
    src = source(
        broker,
        topic,
        group_id=group,
        startup_mode=StartupMode.SPECIFIC_OFFSETS,
        specific_offsets={(topic, 0): 5},
    )
    with SourceReaderHarness(src) as h:
        assert sorted(read_available(h, 7)) == all_of(10, {0: 5, 1: 8})


@pytest.mark.kafka_needs("offsets_for_times")
def test_timestamp_start(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    base = int(time.time() * 1000) - 60_000
    for p in (0, 1):
        broker.produce(
            topic,
            [f"{p}:{i}" for i in range(10)],
            partition=p,
            timestamps=[base + 10 * i for i in range(10)],
        )
    src = source(broker, topic, startup_mode="timestamp", startup_timestamp=base + 65)
    with SourceReaderHarness(src) as h:
        assert sorted(read_available(h, 6)) == all_of(10, {0: 7, 1: 7})


def test_start_offset_is_resolved_before_the_first_checkpoint(broker: Broker) -> None:
    """A "latest" start becomes a concrete offset in the very first snapshot, so a restore
    much later resumes there and loses nothing written in between."""
    topic = two_partitions(broker)
    with SourceReaderHarness(source(broker, topic, startup_mode="latest")) as h:
        snap = h.snapshot()
    assert sorted(snap) == [(topic, 0, 10), (topic, 1, 10)]
    broker.produce(topic, ["0:10", "0:11"], partition=0)
    with SourceReaderHarness(
        source(broker, topic, startup_mode="latest"), restored_state=[snap]
    ) as h:
        assert sorted(read_available(h, 2)) == ["0:10", "0:11"]


# -- bounded mode ---------------------------------------------------------------------------


def test_bounded_at_given_offsets(broker: Broker) -> None:
    topic = two_partitions(broker)
    stops = StoppingOffsets.at_offsets({(topic, 0): 3, (topic, 1): 0})
    src = source(broker, topic, startup_mode="earliest", bounded=stops)
    assert src.bounded
    with SourceReaderHarness(src) as h:
        assert sorted(h.poll_all(timeout=10)) == ["0:0", "0:1", "0:2"]
        assert sorted(h.snapshot()) == [(topic, 0, 3, 3), (topic, 1, 0, 0)]


def test_bounded_at_latest_offsets_seen_at_start(broker: Broker) -> None:
    topic = two_partitions(broker)
    src = source(broker, topic, startup_mode="earliest", bounded=True)
    with SourceReaderHarness(src) as h:
        broker.produce(topic, ["0:late"], partition=0)  # after the start: not read
        assert sorted(h.poll_all(timeout=10)) == all_of(10)


def test_bounded_latest_reads_every_record_written_before_the_start(broker: Broker) -> None:
    """The end is where the broker's fetch says a partition ends, not ListOffsets "latest"
    (which Tansu answers with the last batch's base offset + 1, cutting the batch off)."""
    topic = broker.create_topic(partitions=3)
    values = [f"{n}-{i}" for n in (1, 40, 7) for i in range(3 * n)]  # batches of all sizes
    for n in (1, 40, 7):
        broker.produce(topic, [v for v in values if v.startswith(f"{n}-")])
    src = source(broker, topic, startup_mode="earliest", bounded=True)
    with SourceReaderHarness(src) as h:
        got = h.poll_all(timeout=20)
        snap = h.snapshot()
    assert sorted(got) == sorted(values)
    ends = broker.high_watermarks(topic)
    assert sorted(snap) == sorted((topic, p, end, end) for p, end in ends.items())


def open_transaction(broker: Broker, topic: str) -> Producer:
    """Three committed records, then four of a transaction left open: the last stable offset
    is 3, the high watermark 7."""
    broker.produce(topic, ["c0", "c1", "c2"], partition=0)
    producer = broker.producer(**{"transactional.id": broker.unique("txn")})
    producer.init_transactions(15)
    producer.begin_transaction()
    for i in range(4):
        producer.produce(topic, f"open{i}".encode(), partition=0)
    producer.flush(15)
    return producer


@pytest.mark.kafka_needs("transactions")
@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_bounded_latest_ends_at_the_last_stable_offset_under_read_committed(
    broker: Broker, isolation: str
) -> None:
    topic = broker.create_topic(partitions=1)
    producer = open_transaction(broker, topic)
    src = source(
        broker,
        topic,
        startup_mode="earliest",
        bounded=True,
        properties={"isolation.level": isolation},
    )
    try:
        with SourceReaderHarness(src) as h:
            # read_committed ends at once: it does not wait for the transaction's outcome
            got = h.poll_all(timeout=15)
            snap = h.snapshot()
    finally:
        producer.abort_transaction(15)
    if isolation == "read_committed":
        assert (got, snap) == (["c0", "c1", "c2"], [(topic, 0, 3, 3)])
    else:
        assert got == ["c0", "c1", "c2", "open0", "open1", "open2", "open3"]
        assert snap == [(topic, 0, 7, 7)]


@pytest.mark.kafka_needs("transactions")
def test_latest_start_under_read_committed_keeps_an_undecided_transaction(
    broker: Broker,
) -> None:
    """LATEST under read_committed starts at the last stable offset, as Kafka's consumer
    does: a transaction open at the start that commits later is read, not skipped."""
    topic = broker.create_topic(partitions=1)
    producer = open_transaction(broker, topic)
    with SourceReaderHarness(source(broker, topic, startup_mode="latest")) as h:
        assert h.snapshot() == [(topic, 0, 3)]
        producer.commit_transaction(15)
        assert read_available(h, 4) == ["open0", "open1", "open2", "open3"]


@pytest.mark.kafka_needs("offsets_for_times")
def test_bounded_at_timestamp(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    base = int(time.time() * 1000) - 60_000
    broker.produce(topic, [str(i) for i in range(10)], timestamps=[base + i for i in range(10)])
    src = source(
        broker, topic, startup_mode="earliest", bounded=StoppingOffsets.at_timestamp(base + 4)
    )
    with SourceReaderHarness(src) as h:
        assert h.poll_all(timeout=10) == ["0", "1", "2", "3"]


def test_bounded_restore_keeps_the_original_stop(broker: Broker) -> None:
    topic = two_partitions(broker)
    stops = StoppingOffsets.at_offsets({(topic, 0): 6, (topic, 1): 6})
    with SourceReaderHarness(
        source(broker, topic, startup_mode="earliest", bounded=stops), max_records=2
    ) as h:
        first = h.poll_all(max_batches=1)
        snap = h.snapshot()
    # the restored job is configured with other stops: the checkpointed ones win
    other = StoppingOffsets.at_offsets({(topic, 0): 10, (topic, 1): 10})
    with SourceReaderHarness(
        source(broker, topic, startup_mode="earliest", bounded=other), restored_state=[snap]
    ) as h:
        rest = h.poll_all(timeout=10)
    assert sorted(first + rest) == sorted(f"{p}:{i}" for p in (0, 1) for i in range(6))


# -- committing offsets ---------------------------------------------------------------------


def test_offsets_committed_on_checkpoint_completion(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    src = source(broker, topic, group_id=group, startup_mode="earliest")
    with SourceReaderHarness(src) as h:
        read_available(h, 20)
        h.snapshot(1)
        assert broker.committed(group, topic) == {}  # not before the checkpoint completes
        h.notify_checkpoint_complete(1)
        h.poll()  # commit callbacks are served by the consumer's poll
        deadline = time.monotonic() + 10
        while broker.committed(group, topic) != {0: 10, 1: 10}:
            assert time.monotonic() < deadline, broker.committed(group, topic)
            h.poll()
        snapshot = h.metrics.snapshot()
    assert any(k.endswith("kafka.commits_succeeded") and v >= 1 for k, v in snapshot.items())


def test_commit_on_checkpoint_can_be_switched_off(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    src = source(
        broker, topic, group_id=group, startup_mode="earliest", commit_offsets_on_checkpoint=False
    )
    with SourceReaderHarness(src) as h:
        h.snapshot(1)  # a checkpointing job: nothing read yet, so no auto-commit either
        read_available(h, 20)
        h.snapshot(2)
        h.notify_checkpoint_complete(2)
        read_available(h, 0)
    assert broker.committed(group, topic) == {}


def test_auto_commit_when_not_checkpointing(broker: Broker) -> None:
    topic = two_partitions(broker)
    group = broker.unique("g")
    src = source(broker, topic, group_id=group, startup_mode="earliest")
    with SourceReaderHarness(src) as h:
        read_available(h, 20)
    # closing commits the offsets of every batch the job had processed
    assert broker.committed(group, topic) == {0: 10, 1: 10}


def test_closing_does_not_hang_on_a_broker_that_stopped_answering() -> None:
    """librdkafka's close waits for outstanding offset commits, and for a coordinator, as long
    as the broker does not answer (librdkafka issue 3740): the reader gives it
    ``request_timeout_ms`` and goes on. A broker of its own, frozen with SIGSTOP."""
    if os.environ.get("STROM_KAFKA_BOOTSTRAP", "").strip():
        pytest.skip("needs a broker process of its own to freeze")
    proc = start_tansu()
    broker = Broker("tansu-frozen", proc.bootstrap)
    try:
        topic = two_partitions(broker)
        src = source(
            broker,
            topic,
            group_id=broker.unique("g"),
            startup_mode="earliest",
            request_timeout_ms=2_000,
        )
        h = SourceReaderHarness(src)
        read_available(h, 20)
        h.snapshot(1)
        h.notify_checkpoint_complete(1)  # an asynchronous commit, not answered yet
        os.kill(proc.pid, signal.SIGSTOP)
        start = time.monotonic()
        h.close()
        assert time.monotonic() - start < 15
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        broker.close()
        proc.stop()
