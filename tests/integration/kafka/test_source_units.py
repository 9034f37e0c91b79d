"""Pieces of the Kafka source that need no broker: state entries, options, properties."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import pytest

from strom.connectors.kafka import (
    BadRecordPolicy,
    DeadLetter,
    KafkaProperties,
    KafkaSource,
    KafkaSourceError,
    StartupMode,
    StoppingOffsets,
)
from strom.connectors.kafka.config import REDACTED, is_secret, normalize_reset_strategy
from strom.connectors.kafka.source.badrecords import parse_policy
from strom.connectors.kafka.source.client import close_consumer
from strom.connectors.kafka.source.lookup import OffsetLookup
from strom.connectors.kafka.source.split import EARLIEST, KafkaPartitionSplit, parse_state_entry
from strom.errors import InvalidJobError
from strom.formats import SimpleStringSchema
from strom.testing import SourceReaderHarness, TestingSink


def test_state_entries_round_trip() -> None:
    unbounded = KafkaPartitionSplit("t", 3, 17)
    bounded = KafkaPartitionSplit("t", 0, EARLIEST, stopping_offset=5)
    assert unbounded.state_entry() == ("t", 3, 17)
    assert bounded.state_entry() == ("t", 0, EARLIEST, 5)
    for split in (unbounded, bounded):
        entry = pickle.loads(pickle.dumps(split.state_entry()))
        again = parse_state_entry(entry)
        assert (again.key, again.next_offset, again.stopping_offset) == (
            split.key,
            split.next_offset,
            split.stopping_offset,
        )


@pytest.mark.parametrize(
    "entry", [None, ("t", 0), ("t", -1, 0), (1, 0, 0), ("t", 0, -5), ("t", 0, 3, -1)]
)
def test_bad_state_entries_are_named(entry: object) -> None:
    with pytest.raises(ValueError, match="cannot restore from state entry"):
        parse_state_entry(entry)


def test_startup_mode_accepts_flink_spellings() -> None:
    assert StartupMode.parse("earliest-offset") is StartupMode.EARLIEST
    assert StartupMode.parse("latest") is StartupMode.LATEST
    assert StartupMode.parse("GROUP_OFFSETS") is StartupMode.GROUP_OFFSETS
    assert StartupMode.parse("specific-offsets") is StartupMode.SPECIFIC_OFFSETS
    assert StartupMode.parse(StartupMode.TIMESTAMP) is StartupMode.TIMESTAMP
    with pytest.raises(InvalidJobError):
        StartupMode.parse("now")


def test_stopping_offsets_validate_keys() -> None:
    assert StoppingOffsets.at_offsets({("t", 1): 4}).offsets == {("t", 1): 4}
    with pytest.raises(InvalidJobError):
        StoppingOffsets.at_offsets({"t": 4})  # type: ignore[dict-item]
    with pytest.raises(InvalidJobError):
        StoppingOffsets.at_offsets({("t", 0): -1})


def test_reset_strategy_spellings() -> None:
    assert normalize_reset_strategy("smallest") == "earliest"
    assert normalize_reset_strategy("largest") == "latest"
    assert normalize_reset_strategy("none") == "error"
    with pytest.raises(InvalidJobError):
        normalize_reset_strategy("sometimes")


def test_properties_hide_secrets_but_keep_them() -> None:
    props = KafkaProperties(
        {"sasl.password": "s3cret", "sasl.jaas.config": "x password=s3cret", "acks": "all"},
        bootstrap_servers="h:1",
    )
    assert "s3cret" not in repr(props)
    assert props.redacted()["acks"] == "all"
    assert props["sasl.password"] == "s3cret"
    assert pickle.loads(pickle.dumps(props)) == props
    assert props.client_config(group_id="g")["group.id"] == "g"
    assert all(map(is_secret, ["ssl.key.password", "sasl.oauthbearer.client.secret"]))
    assert not is_secret("bootstrap.servers")
    with pytest.raises(InvalidJobError, match="contradicts"):
        KafkaProperties({"bootstrap.servers": "a:1"}, bootstrap_servers="b:2")


def test_bad_record_policies() -> None:
    assert parse_policy("skip") is BadRecordPolicy.SKIP
    assert parse_policy(BadRecordPolicy.FAIL) is BadRecordPolicy.FAIL
    letter = DeadLetter(topic="dlq", properties={"sasl.password": "s3cret"})
    assert parse_policy(letter) is letter
    assert "s3cret" not in repr(letter)
    assert isinstance(DeadLetter(TestingSink()).target, TestingSink)
    with pytest.raises(InvalidJobError):
        parse_policy("ignore")
    with pytest.raises(InvalidJobError):
        DeadLetter()
    with pytest.raises(InvalidJobError):
        DeadLetter(target=42)  # type: ignore[arg-type]


def test_client_errors_never_show_a_secret_value() -> None:
    secret = "hunter2-very-secret"
    props = KafkaProperties({"sasl.password": secret, "acks": "all"})
    assert props.scrub(f'Invalid value "{secret}" for "x"') == 'Invalid value "***" for "x"'
    # a secret pasted into the wrong property: librdkafka echoes the invalid value
    source: KafkaSource[str] = KafkaSource(
        bootstrap_servers="127.0.0.1:1",
        topics="t",
        startup_mode="earliest",
        deserializer=SimpleStringSchema(),
        properties={"sasl.oauthbearer.client.secret": secret, "sasl.oauthbearer.method": secret},
    )
    with pytest.raises(KafkaSourceError, match="cannot create the consumer") as err:
        SourceReaderHarness(source)
    assert secret not in str(err.value)
    assert REDACTED in str(err.value)


class _Answer:
    def __init__(self, topic: str, partition: int, offset: int, error: object = None) -> None:
        self.topic, self.partition, self.offset, self.error = topic, partition, offset, error


class _FailingCommitted:
    def committed(self, partitions: list[Any], timeout: float) -> list[_Answer]:
        return [_Answer("t", 0, 7), _Answer("t", 1, -1001, "UNSTABLE_OFFSET_COMMIT")]


def test_a_committed_offset_that_cannot_be_fetched_is_an_error_not_a_missing_offset() -> None:
    """Taken for "no committed offset", partition 1 would start at auto.offset.reset."""
    lookup = OffsetLookup(_FailingCommitted(), {}, 1.0)  # type: ignore[arg-type]
    with pytest.raises(KafkaSourceError, match=r"t-1.*UNSTABLE_OFFSET_COMMIT"):
        lookup.committed([("t", 0), ("t", 1)])


class _StuckConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()

    def close(self) -> None:
        self.release.wait(30)


def test_closing_a_consumer_that_hangs_gives_up_after_the_timeout() -> None:
    stuck = _StuckConsumer()
    start = time.monotonic()
    try:
        assert not close_consumer(stuck, 0.2, "src[0]")  # type: ignore[arg-type]
        assert time.monotonic() - start < 5
    finally:
        stuck.release.set()
    assert close_consumer(_Closes(), 5, "src[0]")  # type: ignore[arg-type]


class _Closes:
    def close(self) -> None:
        pass
