"""The Kafka sink when the network breaks: a dedicated Tansu reached only through a loopback
``FaultProxy`` (its advertised listener is the proxy's port, so every connection the producer
makes — bootstrap and leader — can be cut, stalled or refused)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import Broker
from sink_helpers import Pace, checkpointed_env, ints, proxied_tansu

from strom import JobExecutionError
from strom.connectors.kafka.sink import KafkaSink
from strom.testing import FaultProxy, SinkWriterHarness


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[Broker, FaultProxy]]:
    with proxied_tansu() as pair:
        yield pair


@pytest.fixture
def net(proxied: tuple[Broker, FaultProxy]) -> Iterator[tuple[Broker, FaultProxy]]:
    broker, proxy = proxied
    yield broker, proxy
    proxy.refuse(False)
    proxy.resume()


def test_the_proxy_carries_every_connection(net: tuple[Broker, FaultProxy]) -> None:
    broker, proxy = net
    topic = broker.create_topic(partitions=1)
    before = proxy.bytes_up
    with SinkWriterHarness(KafkaSink[str](broker.bootstrap, topic)) as h:
        h.write(["x" * 1000] * 50)
        h.end_input()
    # the records themselves (not only bootstrap metadata) went through the proxy
    assert proxy.bytes_up - before > 50_000


def test_connection_cuts_mid_stream_lose_no_record(
    net: tuple[Broker, FaultProxy], tmp_path: Path
) -> None:
    broker, proxy = net
    topic = broker.create_topic(partitions=2)
    n = 6000
    env = checkpointed_env(tmp_path, 2, interval_ms=40)
    env.from_collection([str(i) for i in range(n)]).map(Pace(0.1, 0.002)).sink_to(
        KafkaSink(
            broker.bootstrap,
            topic,
            delivery_timeout=30,
            retry_backoff=0.05,
            # librdkafka's reconnect backoff grows to 10 s by default; keep the test short
            properties={"reconnect.backoff.max.ms": 300},
        )
    )
    cuts: list[int] = []
    stop = threading.Event()

    def saboteur() -> None:
        while len(cuts) < 4 and not stop.wait(0.4):
            cuts.append(proxy.cut())

    client = env.execute_async("cuts")
    thread = threading.Thread(target=saboteur, daemon=True)
    thread.start()
    try:
        client.wait(120)
    finally:
        stop.set()
        thread.join()
    assert sum(cuts) >= 2, "the job ended before the connections could be cut"
    got = ints(broker.values(topic, min_records=n, timeout=30))
    assert set(got) == set(range(n))  # at-least-once: no gaps (duplicates allowed)


def test_retries_exhausted_fail_the_job_naming_topic_and_error(
    net: tuple[Broker, FaultProxy], tmp_path: Path
) -> None:
    broker, proxy = net
    topic = broker.create_topic(partitions=1)
    env = checkpointed_env(tmp_path, 1, interval_ms=200)
    env.from_collection([str(i) for i in range(200)]).map(Pace(1.0, 0.01)).sink_to(
        KafkaSink(broker.bootstrap, topic, delivery_timeout=1.5, request_timeout=1.0)
    )
    client = env.execute_async("exhausted")
    time.sleep(0.5)  # connected and producing
    proxy.refuse(True)
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(JobExecutionError) as info:
        client.wait(60)
    assert time.monotonic() - started < 30
    text = str(info.value)
    assert f"topic {topic!r}" in text
    assert "_MSG_TIMED_OUT" in text or "_TRANSPORT" in text or "timed out" in text.lower()


def test_log_failures_only_logs_counts_and_goes_on(
    net: tuple[Broker, FaultProxy], caplog: pytest.LogCaptureFixture
) -> None:
    broker, proxy = net
    topic = broker.create_topic(partitions=1)
    sink: KafkaSink[str] = KafkaSink(
        broker.bootstrap,
        topic,
        delivery_timeout=2.5,
        request_timeout=0.5,
        log_failures_only=True,
        properties={"reconnect.backoff.max.ms": 100},
    )
    caplog.set_level(logging.ERROR, logger="strom.connectors.kafka.sink")
    with SinkWriterHarness(sink) as h:
        h.write(["before"])
        h.flush()
        proxy.refuse(True)
        proxy.cut()
        h.write([f"lost-{i}" for i in range(20)])
        h.flush()  # waits for the delivery timeout, then the failures are only logged
        proxy.refuse(False)
        h.flush()
        h.write(["after"])
        h.end_input()
        failed = h.writer._tracker.failed.count  # type: ignore[attr-defined]
    assert failed == 20
    assert f"delivery to topic {topic!r}" in caplog.text
    assert broker.values(topic, min_records=2) == [b"before", b"after"]
