"""Exactly-once KafkaSink: transactions tied to checkpoints, recovery commit, lingering aborts.

Checks through a ``read_committed`` consumer are faithful only on brokers with the
``transactions`` capability (noida-db, a real Kafka). Tests that can still say something on
Tansu are ``kafka_limited`` and weaken only that check there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from brokers import Broker
from confluent_kafka import Producer
from sink_helpers import Pace, checkpointed_env, ints

from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink import KafkaSink, KafkaTransaction
from strom.connectors.kafka.sink import producer as producer_mod
from strom.connectors.kafka.sink.transactional import ProducerFactory, TransactionalProducer
from strom.testing import SinkWriterHarness, fail_once_at


def eo_sink(broker: Broker, topic: str, prefix: str | None = None) -> KafkaSink[str]:
    return KafkaSink(
        broker.bootstrap,
        topic,
        delivery_guarantee="exactly_once",
        transactional_id_prefix=prefix or broker.unique("txn"),
        transaction_timeout=60,
    )


def committed(broker: Broker, topic: str, n: int = 0) -> list[int]:
    return ints(broker.values(topic, read_committed=True, min_records=n))


def pending(state: list[Any]) -> list[KafkaTransaction]:
    return [t for _c, t in state if isinstance(t, KafkaTransaction)]


@pytest.mark.kafka_limited("transactions")
def test_injected_failure_every_record_exactly_once(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic(partitions=2)
    n = 3000
    env = checkpointed_env(tmp_path, 2, interval_ms=60, restarts=2)
    (
        env.from_collection([str(i) for i in range(n)])
        .map(Pace(0.05, 0.002))
        .map(fail_once_at(900))
        .sink_to(eo_sink(broker, topic))
    )
    client = env.execute_async("eo-failure")
    client.wait(120)
    assert client.restarts == 1  # type: ignore[attr-defined]
    got = committed(broker, topic, n)
    if "transactions" in broker.limited:
        # Tansu shows aborted records to read_committed: only "nothing lost" can be checked
        assert set(got) == set(range(n))
    else:
        assert got == list(range(n))
        # the aborted attempt did write records: they are in the log, invisible
        assert len(broker.values(topic)) > n


@pytest.mark.kafka_limited("transactions")
def test_records_visible_only_after_checkpoint_completes(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    with SinkWriterHarness(eo_sink(broker, topic)) as h:
        h.write([str(i) for i in range(10)])
        h.snapshot(1)  # pre-commit: flushed, durable, invisible
        if "transactions" not in broker.limited:
            assert committed(broker, topic) == []
        h.notify_checkpoint_complete(1)
        assert committed(broker, topic, 10) == list(range(10))
        h.write(["10"])
        h.end_input()
        h.snapshot(2)
        h.notify_checkpoint_complete(2)
    assert committed(broker, topic, 11) == list(range(11))


@pytest.mark.kafka_needs("transactions")
def test_recovery_commits_pre_committed_transactions_idempotently(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("rec")
    crashed = SinkWriterHarness(eo_sink(broker, topic, prefix))
    crashed.write([str(i) for i in range(20)])
    state = crashed.snapshot(1)
    # the crash: checkpoint 1 completed, but its notification never arrived
    (txn,) = pending(state)
    assert txn.producer_id >= 0
    assert txn.records == 20
    assert committed(broker, topic) == []
    with SinkWriterHarness(eo_sink(broker, topic, prefix), restored_state=[state]):
        pass  # open() commits the restored transaction with its recorded producer id/epoch
    assert committed(broker, topic, 20) == list(range(20))
    # a second restore from the same checkpoint (another failure before the next one)
    with SinkWriterHarness(eo_sink(broker, topic, prefix), restored_state=[state]):
        pass
    assert committed(broker, topic, 20) == list(range(20))
    crashed.close()


@pytest.mark.kafka_needs("transactions")
def test_lingering_transactions_are_aborted_on_recovery(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("linger")
    crashed = SinkWriterHarness(eo_sink(broker, topic, prefix))
    crashed.write(["1", "2"])
    state = crashed.snapshot(1)
    crashed.notify_checkpoint_complete(1)
    crashed.write(["100", "101"])
    crashed.snapshot(2)  # pre-committed for checkpoint 2, which never completes
    crashed.write(["200"])
    crashed.writer._live[crashed.writer.current_transaction.transactional_id].producer.flush(10)  # type: ignore[attr-defined,union-attr]
    # restore from checkpoint 1: 100, 101 and 200 are replayed by the source, so their
    # transactions must be aborted — and they must not block read_committed readers
    with SinkWriterHarness(eo_sink(broker, topic, prefix), restored_state=[state]) as h:
        h.write(["3"])
        h.snapshot(2)
        h.notify_checkpoint_complete(2)
    assert committed(broker, topic, 3) == [1, 2, 3]
    assert len(broker.values(topic)) == 6  # the aborted ones are in the log, invisible
    crashed.close()


@pytest.mark.kafka_needs("transactions")
def test_scale_down_aborts_lingering_transactions_of_vanished_subtasks(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("scale")
    old = [SinkWriterHarness(eo_sink(broker, topic, prefix), i, 3) for i in range(3)]
    states = []
    for i, h in enumerate(old):
        h.write([str(i)])
        states.append(h.snapshot(1))
        h.notify_checkpoint_complete(1)
        h.write([str(100 + i)])  # open when the job dies
        h.writer._live[h.writer.current_transaction.transactional_id].producer.flush(10)  # type: ignore[attr-defined,union-attr]
    with SinkWriterHarness(eo_sink(broker, topic, prefix), 0, 1, restored_state=states) as h:
        h.write(["7"])
        h.snapshot(2)
        h.notify_checkpoint_complete(2)
        state2 = h.snapshot(3)
    # had any of the three open transactions survived, "7" would sit behind it, unreadable
    assert committed(broker, topic, 4) == [0, 1, 2, 7]
    # scaling back up continues the adopted lineages instead of reusing their ids
    with SinkWriterHarness(eo_sink(broker, topic, prefix), 2, 3, restored_state=[state2]) as h:
        h.write(["8"])
        (txn,) = [h.writer.current_transaction]  # type: ignore[attr-defined]
        # lineage 2 used seq 0 (committed) and 1 (aborted): it goes on above them
        assert txn.lineage == 2
        assert txn.seq >= 2
        h.snapshot(4)
        h.notify_checkpoint_complete(4)
    assert committed(broker, topic, 5) == [0, 1, 2, 7, 8]
    for h in old:
        h.close()


@pytest.mark.kafka_needs("transactions")
def test_a_pending_transaction_the_broker_aborted_fails_the_restore(broker: Broker) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("fenced")
    crashed = SinkWriterHarness(eo_sink(broker, topic, prefix))
    crashed.write([str(i) for i in range(5)])
    state = crashed.snapshot(1)  # pre-committed; checkpoint 1 completes, the job dies
    (txn,) = pending(state)
    # The broker aborts it and bumps the epoch (what Kafka does when the transaction times
    # out while the job is down): the recorded epoch is fenced, the records are gone.
    fencer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": txn.transactional_id}
    )
    fencer.init_transactions(10)
    with pytest.raises(KafkaSinkError, match="5 records are lost"):
        SinkWriterHarness(eo_sink(broker, topic, prefix), restored_state=[state])
    assert committed(broker, topic) == []
    crashed.close()


@pytest.mark.kafka_needs("transactions")
def test_a_lowered_guarantee_still_commits_and_aborts_what_the_checkpoint_recorded(
    broker: Broker,
) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("lowered")
    crashed = SinkWriterHarness(eo_sink(broker, topic, prefix))
    crashed.write(["1", "2"])
    state = crashed.snapshot(1)  # pending at the checkpoint: owed a commit
    crashed.write(["100"])
    crashed.writer._live[crashed.writer.current_transaction.transactional_id].producer.flush(10)  # type: ignore[attr-defined,union-attr]
    # restored as an at-least-once sink: 1, 2 committed, 100's transaction aborted (else it
    # would hide everything after it from read_committed readers), 3 written plainly
    with SinkWriterHarness(KafkaSink[str](broker.bootstrap, topic), restored_state=[state]) as h:
        h.write(["3"])
        h.end_input()
    assert committed(broker, topic, 3) == [1, 2, 3]
    crashed.close()


@pytest.mark.kafka_needs("transactions")
def test_an_abandoned_prepared_producer_cannot_fence_a_later_one(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = broker.create_topic(partitions=1)
    prefix = broker.unique("abandon")
    real = producer_mod.Producer

    class SlowInBackground(real):  # type: ignore[misc,valid-type]
        def init_transactions(self, *args: Any) -> None:
            if threading.current_thread().name.startswith("strom-kafka-init"):
                time.sleep(1.0)  # the next id is still being prepared when the job dies
            super().init_transactions(*args)

    monkeypatch.setattr(producer_mod, "Producer", SlowInBackground)
    conf = eo_sink(broker, topic, prefix).producer_config()
    factory = ProducerFactory(conf, 10.0)
    first = factory.take(f"{prefix}-0-0", f"{prefix}-0-1")  # prepares -0-1 in the background
    time.sleep(0.2)
    started = time.monotonic()
    factory.close()  # the job fails over: nothing waits for the preparation
    first.close()
    assert time.monotonic() - started < 0.5
    # the restarted attempt takes that id: its producer must not be fenced by the old init
    mine = TransactionalProducer(conf, f"{prefix}-0-1", 10.0)
    mine.producer.begin_transaction()
    mine.producer.produce(topic, b"7")
    assert mine.producer.flush(10) == 0
    time.sleep(1.5)  # long after the abandoned initialization finished
    mine.producer.commit_transaction(10)
    assert committed(broker, topic, 1) == [7]
    mine.close()


def test_open_does_not_wait_for_the_lingering_probe() -> None:
    # nothing listens on port 9: the probe's init_transactions runs into its timeout
    sink: KafkaSink[str] = KafkaSink(
        "127.0.0.1:9",
        "t",
        delivery_guarantee="exactly_once",
        transactional_id_prefix="probe",
        request_timeout=6,
    )
    started = time.monotonic()
    h = SinkWriterHarness(sink)
    assert time.monotonic() - started < 3  # the probe runs while the job starts
    with pytest.raises(KafkaSinkError, match="probing probe-0-0"):
        h.write(["x"])  # the first transaction waits for it, and reports its failure
    h.close()
