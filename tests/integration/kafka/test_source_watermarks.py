"""Per-partition watermarks: the slowest partition holds event time back, unless it is idle;
a subtask that owns no partition never holds it back."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from brokers import Broker

from strom import JobCancelledError, StreamExecutionEnvironment
from strom.connectors.kafka import KafkaSource
from strom.eventtime import Time, WatermarkStrategy
from strom.formats import SimpleStringSchema
from strom.testing import TestingSink
from strom.windowing import TumblingEventTimeWindows


def window_counts(
    broker: Broker, topic: str, parallelism: int, strategy: WatermarkStrategy, wait: float
) -> list[int]:
    """Run an unbounded 1-second event-time window count for up to ``wait`` seconds."""
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    sink: TestingSink[int] = TestingSink()
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers=broker.bootstrap,
        topics=topic,
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        discovery_interval_ms=None,
    )
    (
        env.from_source(source, strategy)
        .map(lambda _v: 1)
        .key_by(lambda _v: 0)
        .window(TumblingEventTimeWindows.of(Time.seconds(1)))
        .reduce(lambda a, b: a + b)
        .sink_to(sink)
    )
    client = env.execute_async("kafka-watermarks")
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and len(sink.results) < 5:
            time.sleep(0.05)
    finally:
        client.cancel()
        try:
            client.wait(10)
        except JobCancelledError:
            pass
    return list(sink.results)


def write(broker: Broker, topic: str, partition: int, timestamps: list[int]) -> None:
    broker.produce(topic, [b"x"] * len(timestamps), partition=partition, timestamps=timestamps)


def base() -> int:
    return (int(time.time() * 1000) - 60_000) // 1000 * 1000


@pytest.mark.parametrize("idleness", [True, False])
def test_a_stalled_partition_holds_event_time_back_until_idle(
    broker: Broker, idleness: bool
) -> None:
    topic = broker.create_topic(partitions=2)
    t0 = base()
    write(broker, topic, 0, [t0 + 100 * i for i in range(100)])  # ten seconds of event time
    write(broker, topic, 1, [t0])  # then silent
    strategy: Any = WatermarkStrategy.for_monotonous_timestamps()
    if idleness:
        # long enough that partition 1's one record is surely read before the partition counts
        # as idle, even on a loaded machine (it failed once under CI load at 300 ms)
        strategy = strategy.with_idleness(2_000)
    stop = threading.Event()

    def keep_partition_0_live() -> None:
        # a live partition next to the stalled one (were both quiet, the whole source would
        # be idle, which also holds event time where it is)
        ts = t0 + 10_000
        while not stop.wait(0.05):
            write(broker, topic, 0, [ts])
            ts += 100

    feeder = threading.Thread(target=keep_partition_0_live, daemon=True)
    feeder.start()
    try:
        counts = window_counts(broker, topic, 1, strategy, wait=20.0 if idleness else 1.5)
    finally:
        stop.set()
        feeder.join(5)
    if idleness:
        assert counts[:5] == [11, 10, 10, 10, 10]  # the first window has partition 1's record
    else:
        assert counts == []  # partition 1's watermark stays at its only record


def test_a_subtask_without_partitions_does_not_hold_event_time_back(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    t0 = base()
    write(broker, topic, 0, [t0 + 100 * i for i in range(100)])
    counts = window_counts(
        broker, topic, 2, WatermarkStrategy.for_monotonous_timestamps(), wait=10.0
    )
    assert counts[:5] == [10, 10, 10, 10, 10]
