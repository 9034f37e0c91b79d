"""Capability probes for the test brokers: does this server do what a test needs?

Each probe exercises one feature on a fresh topic and returns ``(ok, reason)``; the reason
becomes the skip message of tests that need the feature. ``Broker.capability`` runs a probe the
first time a test asks for it and caches the answer for the session.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from brokers import Broker, kcat_available
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewPartitions

__all__ = ["PROBES"]


def _probe_create_partitions(b: Broker) -> tuple[bool, str]:
    topic = b.create_topic(partitions=1, prefix="probe-cp")
    try:
        b.admin().create_partitions([NewPartitions(topic, 2)])[topic].result(10)
    except KafkaException as exc:
        return False, f"CreatePartitions fails: {exc}"
    try:
        b.wait_partitions(topic, 2, timeout=5)
    except TimeoutError:
        return False, "CreatePartitions succeeds but metadata keeps the old partition count"
    return True, ""


def _probe_latest(b: Broker) -> tuple[bool, str]:
    topic = b.create_topic(partitions=1, prefix="probe-latest")
    producer = b.producer(**{"linger.ms": 50})
    for i in range(5):  # one batch of five: a broker answering "base offset + 1" says 1
        producer.produce(topic, value=str(i).encode(), partition=0)
    producer.flush(10)
    consumer = b.consumer()
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    return (high == 5, "" if high == 5 else f"ListOffsets latest says {high}, expected 5")


def _probe_times(b: Broker) -> tuple[bool, str]:
    topic = b.create_topic(partitions=1, prefix="probe-times")
    base = int(time.time() * 1000) - 60_000  # recent: older records may fall to retention
    b.produce(topic, [b"a", b"b", b"c"], partition=0, timestamps=[base, base + 10, base + 20])
    consumer = b.consumer()
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 5)], timeout=10)
    finally:
        consumer.close()
    got = found[0].offset
    return (got == 1, "" if got == 1 else f"offsets_for_times gives {got}, expected 1")


def _probe_transactions(b: Broker) -> tuple[bool, str]:
    topic = b.create_topic(partitions=1, prefix="probe-txn")
    txn_id = b.unique("probe-txn-id")

    def transactional() -> Producer:
        p = b.producer(**{"transactional.id": txn_id, "transaction.timeout.ms": 10000})
        p.init_transactions(10)
        return p

    p = transactional()
    p.begin_transaction()
    p.produce(topic, b"committed-1", partition=0)
    p.commit_transaction(10)
    p.begin_transaction()
    p.produce(topic, b"aborted", partition=0)
    p.flush(10)  # librdkafka drops unsent records on abort: make them reach the broker
    p.abort_transaction(10)
    p.begin_transaction()
    p.produce(topic, b"lingering", partition=0)
    p.flush(10)
    # a new producer with the same transactional id must abort the open transaction
    p2 = transactional()
    p2.begin_transaction()
    p2.produce(topic, b"committed-2", partition=0)
    p2.commit_transaction(10)
    seen = b.values(topic, read_committed=True, min_records=2, timeout=10)
    if seen != [b"committed-1", b"committed-2"]:
        return False, f"read_committed sees {seen!r}"
    return True, ""


def _probe_kcat(b: Broker) -> tuple[bool, str]:
    if not kcat_available():
        return False, "kcat is not installed (apt-get install -y kcat)"
    topic = b.create_topic(partitions=1, prefix="probe-kcat")
    try:
        b.kcat_produce(topic, ["x"], partition=0)
    except subprocess.CalledProcessError as exc:
        # Debian's kcat bundles librdkafka 2.0, whose ApiVersions request Tansu 0.6 mis-answers
        first = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[:1]
        return False, f"kcat cannot produce: {first[0] if first else exc}"
    return True, ""


PROBES: dict[str, Callable[[Broker], tuple[bool, str]]] = {
    "kcat": _probe_kcat,
    "create_partitions": _probe_create_partitions,
    "list_offsets_latest": _probe_latest,
    "offsets_for_times": _probe_times,
    "transactions": _probe_transactions,
}
