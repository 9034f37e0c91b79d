"""The Kafka sink without a broker: options, secrets, records, partitioners, bad-record
policies and the bookkeeping of the exactly-once transactional id scheme."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest

from strom.connectors.base import DeliveryGuarantee
from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink import (
    FixedPartitioner,
    KafkaSink,
    KafkaTransaction,
    KeyedSerializationSchema,
    KeyHashPartitioner,
    ProducerRecord,
    RoundRobinPartitioner,
)
from strom.connectors.kafka.sink import committer as committer_mod
from strom.connectors.kafka.sink.committer import abort_lingering_lineages, split_restored
from strom.connectors.kafka.sink.partitioners import as_partitioner
from strom.connectors.kafka.sink.producer import ClientLog, DeliveryTracker
from strom.connectors.kafka.sink.records import RecordBuilder
from strom.connectors.kafka.sink.transactions import MARK_COPIES, LineageMark
from strom.errors import InvalidJobError
from strom.formats import JsonSchema, SerializationError, SimpleStringSchema
from strom.metrics import MetricGroup

BS = "127.0.0.1:9"


# -- options --------------------------------------------------------------------------------


def test_defaults_are_at_least_once_with_fixed_partitioner() -> None:
    sink: KafkaSink[str] = KafkaSink(BS, "t")
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    assert isinstance(sink.partitioner, FixedPartitioner)
    conf = sink.producer_config()
    assert conf["enable.idempotence"] is True
    assert conf["delivery.report.only.error"] is True
    assert conf["partitioner"] == "murmur2_random"
    assert conf["message.timeout.ms"] == 120_000


@pytest.mark.parametrize("guarantee", ["none", "at_least_once", "exactly-once"])
def test_guarantee_parsing(guarantee: str) -> None:
    sink: KafkaSink[str] = KafkaSink(
        BS, "t", delivery_guarantee=guarantee, transactional_id_prefix="p"
    )
    assert sink.delivery_guarantee.value == guarantee.replace("-", "_")


def test_timeouts_and_retries_reach_the_client() -> None:
    sink: KafkaSink[str] = KafkaSink(
        BS, "t", retries=3, retry_backoff=0.2, retry_backoff_max=2, delivery_timeout=7
    )
    conf = sink.producer_config()
    assert (conf["retries"], conf["retry.backoff.ms"], conf["retry.backoff.max.ms"]) == (
        3,
        200,
        2000,
    )
    assert conf["message.timeout.ms"] == 7000


def test_user_properties_override_defaults_but_not_owned_ones() -> None:
    sink: KafkaSink[str] = KafkaSink(BS, "t", properties={"linger.ms": 50})
    assert sink.producer_config()["linger.ms"] == 50
    with pytest.raises(InvalidJobError, match=r"transactional\.id"):
        KafkaSink(BS, "t", properties={"transactional.id": "x"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "topic"),
        ({"topic": "t", "delivery_guarantee": "exactly_once"}, "transactional_id_prefix"),
        (
            {"topic": "t", "delivery_guarantee": "exactly_once", "transactional_id_prefix": "a b"},
            "letters",
        ),
        (
            {
                "topic": "t",
                "delivery_guarantee": "exactly_once",
                "transactional_id_prefix": "p",
                "log_failures_only": True,
            },
            "log_failures_only",
        ),
        ({"topic": "t", "delivery_guarantee": "at_most_once"}, "supports"),
        ({"topic": "t", "on_serialization_error": "ignore"}, "on_serialization_error"),
        ({"topic": "t", "delivery_timeout": 0}, "delivery_timeout"),
        ({"topic": "t", "retries": -1}, "retries"),
        ({"topic": "t", "serializer": 3}, "serializer"),
        (
            {"topic": "t", "serializer": JsonSchema(), "record_serializer": lambda e: None},
            "not both",
        ),
    ],
)
def test_invalid_options_fail_at_build_time(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidJobError, match=match):
        KafkaSink(BS, **kwargs)


def test_bootstrap_servers_required() -> None:
    with pytest.raises(InvalidJobError, match="bootstrap"):
        KafkaSink(topic="t")


def test_secrets_never_in_repr_describe_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-very-secret"
    sink: KafkaSink[str] = KafkaSink(
        BS,
        "t",
        properties={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "alice",
            "sasl.password": secret,
            "ssl.key.password": secret,
        },
    )
    assert secret not in repr(sink)
    assert secret not in sink.describe()
    assert "alice" in repr(sink)  # non-secret settings stay visible for debugging
    caplog.set_level(logging.DEBUG)
    logging.getLogger("strom").info("sink %r", sink)
    assert secret not in caplog.text
    # the client config itself carries it (librdkafka needs it)
    assert sink.producer_config()["sasl.password"] == secret


def test_sink_pickles() -> None:
    sink: KafkaSink[Any] = KafkaSink(
        BS, "t", serializer=JsonSchema(), partitioner=KeyHashPartitioner()
    )
    clone = pickle.loads(pickle.dumps(sink))
    assert clone.topic == "t"
    assert isinstance(clone.partitioner, KeyHashPartitioner)


# -- partitioners ---------------------------------------------------------------------------


def test_fixed_partitioner_is_subtask_mod_partitions() -> None:
    chosen = []
    for subtask in range(5):
        p = FixedPartitioner()
        p.open(subtask, 5)
        chosen.append(p.partition("x", None, b"v", "t", [0, 1, 2]))
    assert chosen == [0, 1, 2, 0, 1]


def test_round_robin_cycles_per_topic_from_subtask_index() -> None:
    p = RoundRobinPartitioner()
    p.open(1, 2)
    got = [p.partition(i, None, None, "t", [0, 1, 2]) for i in range(5)]
    assert got == [1, 2, 0, 1, 2]
    assert p.partition(0, None, None, "u", [0, 1]) == 1


def test_key_hash_leaves_partition_to_client() -> None:
    p = KeyHashPartitioner()
    assert p.partition("x", b"k", b"v", "t", [0, 1]) is None
    assert not p.needs_partitions


def test_callable_partitioner() -> None:
    p = as_partitioner(lambda element, key, value, topic, parts: parts[-1])
    assert p.partition(1, None, None, "t", [0, 1, 7]) == 7
    with pytest.raises(TypeError, match="partitioner"):
        as_partitioner(42)


# -- records and bad-record policies --------------------------------------------------------


def builder(**kwargs: Any) -> RecordBuilder[Any]:
    args: dict[str, Any] = {
        "topic": "t",
        "serializer": None,
        "key_serializer": None,
        "record_serializer": None,
        "write_timestamps": False,
        "on_serialization_error": "fail",
        "metrics": MetricGroup(),
        "where": "Kafka sink test[0] (topic 't')",
    }
    args.update(kwargs)
    return RecordBuilder(**args)


def test_values_fast_path_with_schema() -> None:
    b = builder(serializer=JsonSchema())
    _kept, payloads = b.values([{"a": 1}, [2]])
    assert payloads == [b'{"a":1}', b"[2]"]
    assert b.simple


def test_raw_values_need_bytes_or_str() -> None:
    b = builder()
    assert b.values(["x", b"y"])[1] == [b"x", b"y"]
    with pytest.raises(SerializationError, match="not bytes or str") as info:
        b.values(["ok", 3])
    assert info.value.index == 1
    assert "Kafka sink test[0]" in str(info.value)


def test_skip_policy_counts_and_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    metrics = MetricGroup()
    b = builder(serializer=SimpleStringSchema(), on_serialization_error="skip", metrics=metrics)
    kept, payloads = b.values(["a", 5, "c"])
    assert kept == ["a", "c"]
    assert payloads == [b"a", b"c"]
    assert metrics.snapshot()["records_skipped"] == 1
    assert "skips a record" in caplog.text


def test_dead_letter_callable_gets_element_and_error() -> None:
    dead: list[tuple[Any, SerializationError]] = []
    metrics = MetricGroup()
    b = builder(
        serializer=JsonSchema(),
        on_serialization_error=lambda e, err: dead.append((e, err)),
        metrics=metrics,
    )
    bad = {1: object()}
    kept, _ = b.values([{"ok": 1}, bad])
    assert kept == [{"ok": 1}]
    assert dead[0][0] is bad
    assert "topic 't'" in str(dead[0][1])
    assert metrics.snapshot()["records_dead_lettered"] == 1


def test_keyed_schema_and_record_serializer() -> None:
    class Keyed(KeyedSerializationSchema[tuple[str, int]]):
        def serialize_key(self, element: tuple[str, int]) -> bytes:
            return element[0].encode()

        def serialize_value(self, element: tuple[str, int]) -> bytes:
            return str(element[1]).encode()

        def get_target_topic(self, element: tuple[str, int]) -> str | None:
            return "other" if element[1] < 0 else None

    out = builder(record_serializer=Keyed()).build([("a", 1), ("b", -1)], None)
    assert [(r.topic, r.key, r.value) for r in out] == [("t", b"a", b"1"), ("other", b"b", b"-1")]

    def full(e: int) -> ProducerRecord:
        return ProducerRecord(
            key=str(e),
            value=f"v{e}",
            topic=f"t{e}",
            partition=e,
            headers={"h": "x"},
            timestamp=1000 + e,
        )

    (r,) = builder(record_serializer=full).build([2], [5])
    assert (r.topic, r.key, r.value, r.partition, r.headers, r.timestamp) == (
        "t2",
        b"2",
        b"v2",
        2,
        [("h", b"x")],
        1002,
    )


def test_stream_timestamps_only_with_write_timestamps() -> None:
    b = builder(key_serializer=lambda e: e)
    assert b.build(["k"], [77])[0].timestamp is None
    b = builder(key_serializer=lambda e: e, write_timestamps=True)
    assert b.build(["k"], [77])[0].timestamp == 77


def test_record_serializer_bugs_are_bad_records_naming_the_element() -> None:
    def broken(e: Any) -> ProducerRecord:
        raise KeyError("field")

    with pytest.raises(SerializationError, match="KeyError") as info:
        builder(record_serializer=broken).build(["elem-1"], None)
    assert "elem-1" in str(info.value)
    with pytest.raises(SerializationError, match="not a ProducerRecord"):
        builder(record_serializer=lambda e: b"x").build(["e"], None)


# -- delivery tracking ----------------------------------------------------------------------


def test_tracker_fails_with_topic_and_error_by_default() -> None:
    t = DeliveryTracker(log_failures_only=False, metrics=MetricGroup(), where="Kafka sink s[0]")
    t.record_failure("orders", 3, "_MSG_TIMED_OUT: Local: Message timed out")
    with pytest.raises(KafkaSinkError, match=r"topic 'orders' partition 3.*_MSG_TIMED_OUT"):
        t.check()


def test_tracker_logs_and_counts_with_log_failures_only(caplog: pytest.LogCaptureFixture) -> None:
    metrics = MetricGroup()
    t = DeliveryTracker(log_failures_only=True, metrics=metrics, where="Kafka sink s[0]")
    for _ in range(3):
        t.record_failure("orders", 0, "boom")
    t.check()
    assert metrics.snapshot()["records_failed"] == 3
    assert caplog.text.count("delivery to topic 'orders'") == 1  # rate-limited


def test_client_log_reads_producer_id_and_epoch(caplog: pytest.LogCaptureFixture) -> None:
    tap = ClientLog("p")
    tap.log(7, "%s [%s] %s", "GETPID", "rdkafka#producer-1", "Acquired PID{Id:1003,Epoch:2}")
    assert (tap.producer_id, tap.epoch) == (1003, 2)
    tap.log(logging.DEBUG, "%s", "chatter")
    tap.log(logging.WARNING, "%s", "broker down")
    assert "broker down" in caplog.text
    assert "chatter" not in caplog.text


# -- exactly-once bookkeeping ---------------------------------------------------------------


def test_transactions_pickle_without_live_handles() -> None:
    txn = KafkaTransaction("p-0-3", lineage=0, seq=3, producer_id=1000, epoch=1, records=5)
    assert pickle.loads(pickle.dumps(txn)) == txn
    assert "1000" in repr(txn)


def snapshot(writer: int, parallelism: int, next_seq: dict[int, int], pending: int) -> list[Any]:
    mark = LineageMark("p", writer, parallelism, next_seq)
    txns = [(9, KafkaTransaction(f"p-{writer}-{i}", writer, i, 1, 0)) for i in range(pending)]
    return [(9, mark)] * MARK_COPIES + txns


def deal(snapshots: list[list[Any]], parallelism: int) -> list[list[Any]]:
    """What the runtime does with sink writer state (SinkWriterOperator.initialize_state)."""
    entries = [e for s in snapshots for e in s]
    return [entries[i::parallelism] for i in range(parallelism)]


@pytest.mark.parametrize(("old", "new"), [(4, 2), (2, 4), (3, 3), (1, 7), (5, 128)])
def test_every_subtask_sees_every_lineage_after_rescale(
    old: int, new: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = [snapshot(w, old, {w: 10 + w}, pending=w % 3) for w in range(old)]
    shares = deal(snaps, new)
    probed: dict[int, list[tuple[int, int]]] = {}

    def fake_abort(conf: Any, prefix: str, lineage: int, start: int, *rest: Any) -> int:
        probed.setdefault(lineage, []).append((start, len(probed)))
        return start + 1

    monkeypatch.setattr(committer_mod, "abort_lineage", fake_abort)
    all_txns = []
    for sub, share in enumerate(shares):
        txns, marks = split_restored(share)
        assert txns is not None
        all_txns.extend(txns)
        assert {m.writer for m in marks} == set(range(old))
        found = abort_lingering_lineages(marks, {}, sub, new, 1.0, "w")
        # each subtask owns the lineages l with l % new == sub
        assert {lin for _p, lin in found} == {w for w in range(old) if w % new == sub}
    # every lineage is probed exactly once, from its first non-pending seq
    assert {lin: [s for s, _ in v] for lin, v in probed.items()} == {
        w: [10 + w] for w in range(old)
    }
    # every pending transaction is restored exactly once somewhere
    assert sorted(t.transactional_id for _c, t in all_txns) == sorted(
        f"p-{w}-{i}" for w in range(old) for i in range(w % 3)
    )


def test_missing_marks_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    marks = [LineageMark("p", 0, 3, {0: 1}), LineageMark("p", 1, 3, {1: 1})]
    with pytest.raises(KafkaSinkError, match="parallelism"):
        abort_lingering_lineages(marks, {}, 0, 1, 1.0, "w")
