"""Offsets in each situation of seed §3.11, in whole jobs, and restores at another parallelism.

1. first start without a savepoint → the configured start position;
2. start from a savepoint → the savepoint's offsets override the start position;
3. restore from a checkpoint after a failure → the checkpoint's offsets (exactly-once state);
4. failure with checkpointing off → restart from the group's committed offsets.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from brokers import Broker

from strom import StreamExecutionEnvironment
from strom.connectors.kafka import KafkaSource, StartupMode, StoppingOffsets
from strom.formats import SimpleStringSchema
from strom.functions import MapFunction
from strom.runtime.restart import RestartStrategies
from strom.testing import SourceReaderHarness, TestingSink, fail_once_at

WORDS = [f"w{i % 17}" for i in range(4000)]


def kafka_source(broker: Broker, topic: str, **options: Any) -> KafkaSource[str]:
    options.setdefault("deserializer", SimpleStringSchema())
    options.setdefault("discovery_interval_ms", None)
    return KafkaSource(bootstrap_servers=broker.bootstrap, topics=topic, **options)


def env_with(parallelism: int, tmp_path: Path | None = None) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(50)
    if tmp_path is not None:
        env.enable_checkpointing(20)
        env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    return env


class Slow(MapFunction[Any, Any]):
    """Slows the stream so that checkpoints land between records."""

    def map(self, value: Any) -> Any:
        time.sleep(0.0002)
        return value


def final_counts(results: list[tuple[str, int]]) -> dict[str, int]:
    final: dict[str, int] = {}
    for word, count in results:
        final[word] = max(final.get(word, 0), count)
    return final


def test_first_start_uses_the_start_position(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    for p in (0, 1):
        broker.produce(topic, [f"{p}:{i}" for i in range(20)], partition=p)
    group = broker.unique("g")
    broker.commit(group, {(topic, 0): 15, (topic, 1): 18})
    env = env_with(2)
    sink: TestingSink[str] = TestingSink()
    env.from_source(kafka_source(broker, topic, group_id=group, bounded=True)).sink_to(sink)
    env.execute("first-start")
    expected = [f"0:{i}" for i in range(15, 20)] + [f"1:{i}" for i in range(18, 20)]
    assert sorted(sink.results) == sorted(expected)


def test_savepoint_offsets_override_the_start_position_also_at_another_parallelism(
    broker: Broker, tmp_path: Path
) -> None:
    topic = broker.create_topic(partitions=4)
    broker.produce(topic, [f"a{i}" for i in range(400)])
    env = env_with(4, tmp_path)
    env.enable_checkpointing(60_000)  # only the savepoint
    first: TestingSink[str] = TestingSink()
    env.from_source(
        kafka_source(broker, topic, group_id=broker.unique("g"), startup_mode="earliest")
    ).uid("kafka").sink_to(first)
    client = env.execute_async("savepoint-1")
    deadline = time.monotonic() + 20
    while len(first.results) < 400:
        assert time.monotonic() < deadline, len(first.results)
        time.sleep(0.02)
    savepoint = client.stop_with_savepoint(str(tmp_path / "savepoints"))  # type: ignore[attr-defined]
    assert sorted(first.results) == sorted(f"a{i}" for i in range(400))

    broker.produce(topic, [f"b{i}" for i in range(200)])
    env = env_with(2, tmp_path)  # rescaled 4 -> 2
    env.restore_from(savepoint)
    second: TestingSink[str] = TestingSink()
    # EARLIEST would re-read everything: the savepoint's offsets win over the start position
    resumed = kafka_source(broker, topic, startup_mode="earliest", bounded=True)
    env.from_source(resumed).uid("kafka").sink_to(second)
    env.execute("savepoint-2")
    assert sorted(second.results) == sorted(f"b{i}" for i in range(200))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_restore_from_checkpoint_after_failure_is_exactly_once(
    broker: Broker, tmp_path: Path, parallelism: int
) -> None:
    topic = broker.create_topic(partitions=4)
    broker.produce(topic, WORDS)
    env = env_with(parallelism, tmp_path)
    sink: TestingSink[tuple[str, int]] = TestingSink()
    (
        env.from_source(kafka_source(broker, topic, startup_mode="earliest", bounded=True))
        .map(Slow())
        .map(fail_once_at(1500 // parallelism))
        .map(lambda w: (w, 1))
        .key_by(lambda t: t[0])
        .sum(1)
        .sink_to(sink)
    )
    client = env.execute_async("restore-after-failure")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    # exactly-once state: each word counted exactly as often as it was written
    assert final_counts(sink.results) == dict(Counter(WORDS))


def test_failure_without_checkpointing_restarts_from_committed_offsets(broker: Broker) -> None:
    topic = broker.create_topic(partitions=2)
    values = [f"r{i}" for i in range(2000)]
    broker.produce(topic, values)
    group = broker.unique("g")
    env = env_with(1)  # no checkpointing, but a restart strategy
    sink: TestingSink[str] = TestingSink()
    env.from_source(
        kafka_source(
            broker,
            topic,
            group_id=group,
            properties={"auto.offset.reset": "earliest"},
            bounded=True,
        )
    ).map(fail_once_at(1200)).sink_to(sink)
    client = env.execute_async("no-checkpoints")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    counts = Counter(sink.results)
    assert set(counts) == set(values)  # nothing lost
    duplicates = sum(counts.values()) - len(values)
    # restarted from the committed offsets of the batches processed before the failure, not
    # from the beginning: at most about one batch per partition is read twice
    assert 0 <= duplicates <= 2 * 50
    assert broker.committed(group, topic) == broker.high_watermarks(topic)


def test_rescale_restore_4_to_2_keeps_every_position(broker: Broker) -> None:
    topic = broker.create_topic(partitions=6)
    for p in range(6):
        broker.produce(topic, [f"{p}:{i}" for i in range(10)], partition=p)
    src = kafka_source(broker, topic, startup_mode="earliest")
    snapshots: list[list[Any]] = []
    before: list[str] = []
    for subtask in range(4):
        with SourceReaderHarness(src, subtask, 4, max_records=3) as h:
            got: list[str] = []
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                got += h.poll() or []
            before += got
            snapshots.append(h.snapshot())
    assert sum(len(s) for s in snapshots) == 6  # one entry per partition
    # the restored job is bounded at the ends: restored positions carry no stop, so each
    # partition gets one resolved at open
    ends = {(topic, p): 10 for p in range(6)}
    resumed = kafka_source(
        broker, topic, startup_mode="earliest", bounded=StoppingOffsets.at_offsets(ends)
    )
    after: list[str] = []
    for subtask in range(2):
        with SourceReaderHarness(resumed, subtask, 2, restored_state=snapshots) as h:
            after += h.poll_all(timeout=10)
    assert sorted(before + after) == sorted(f"{p}:{i}" for p in range(6) for i in range(10))


def test_restore_drops_topics_no_longer_subscribed(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    kept = broker.create_topic(partitions=1)
    gone = broker.create_topic(partitions=1)
    broker.produce(kept, ["k0", "k1"])
    state = [[(kept, 0, 1), (gone, 0, 5)]]
    src = kafka_source(broker, kept, startup_mode=StartupMode.EARLIEST)
    caplog.set_level("INFO", logger="strom.connectors.kafka.source")
    with SourceReaderHarness(src, restored_state=state) as h:
        got: list[str] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got += h.poll() or []
        assert got == ["k1"]
        assert h.snapshot() == [(kept, 0, 2)]
    assert "no longer subscribed" in caplog.text
    assert gone in caplog.text
