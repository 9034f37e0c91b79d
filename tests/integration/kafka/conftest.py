"""Kafka test fixtures: real Kafka-protocol brokers for every test under this folder.

README for fixture users (source and sink tests alike)
------------------------------------------------------
Fixtures:

* ``broker`` — a :class:`brokers.Broker`, parametrized over every available broker
  (``[tansu]`` and ``[noida]``, or ``[external]`` when ``STROM_KAFKA_BOOTSTRAP`` is set). A test
  using it runs once per broker that has the capabilities it declares and is skipped on the
  others with the reason.
* ``tansu_broker``, ``noida_broker`` — the session-scoped brokers themselves (started on first
  use, on free 127.0.0.1 ports, stopped by PID at session end even when tests fail). Prefer
  ``broker``; these are for tests that need one specific server.
* ``kcat`` — the path of the ``kcat`` binary; skips the test when kcat is not installed.
  Mark kcat tests ``@pytest.mark.kafka_needs("kcat")`` too (see below).

Markers:

* ``@pytest.mark.kafka_needs("transactions", "create_partitions", ...)`` — capabilities the
  test needs; names in ``brokers.CAPABILITIES`` (``create_partitions``, ``list_offsets_latest``,
  ``offsets_for_times``, ``transactions``, ``volume``, ``kcat``). Capabilities are probed on
  first use. Tests that use kcat need ``kcat``: Debian's kcat (librdkafka 2.0) cannot talk to
  Tansu 0.6, so kcat tests run on noida-db (or an external Kafka).
* ``@pytest.mark.kafka_limited("transactions")`` — the test runs on every broker, and
  ``broker.limited`` holds the listed capabilities this broker lacks, so a test can weaken
  one check (e.g. exactly-once output on a broker whose read_committed is not faithful).
* Every test here is marked ``kafka`` and ``integration`` automatically.

Helpers on ``Broker``: ``create_topic(partitions=N)`` (unique name), ``unique(prefix)``,
``add_partitions``, ``produce(topic, values, keys=, partition=, timestamps=, headers=)``,
``consume_all(topic, min_records=, read_committed=)`` → ``list[Record]``, ``values(topic)``,
``high_watermarks(topic)`` (end offsets as fetch reports them: right on every broker),
``committed(group, topic)``, ``commit(group, {(topic, p): offset})``, ``producer()``,
``consumer()``, ``admin()``, ``config()``, ``kcat_produce(topic, lines)``,
``kcat_consume(topic, read_committed=)``.

Pitfall: noida-db enforces time retention by *record timestamp* (Kafka's default is 7 days):
records with old timestamps (2020, say) are deleted within a second or two of being written.
Give records explicit timestamps only close to now, e.g. ``int(time.time() * 1000) - 60_000 + i``.

Note: ``KafkaSource(bounded=True)`` and ``startup_mode="latest"`` work on every broker: the
source finds partition ends by reading to librdkafka's end-of-partition signal, not through
ListOffsets "latest" (which Tansu answers wrongly; the ``list_offsets_latest`` capability only
matters to tests of that request itself).

``STROM_KAFKA_BOOTSTRAP=host:port`` runs the whole suite against that broker instead (a real
Kafka), treated as having every capability.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from brokers import (
    CAPABILITIES,
    Broker,
    BrokerProcess,
    start_noida,
    start_tansu,
)

_HERE = Path(__file__).parent
_EXTERNAL = os.environ.get("STROM_KAFKA_BOOTSTRAP", "").strip()
BROKER_NAMES = ["external"] if _EXTERNAL else ["tansu", "noida"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.kafka)
            item.add_marker(pytest.mark.integration)


def _session_broker(name: str, start: Callable[[], BrokerProcess]) -> Iterator[Broker]:
    proc = start()
    broker = Broker(name, proc.bootstrap)
    try:
        yield broker
    finally:
        broker.close()
        proc.stop()


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[Broker]:
    if _EXTERNAL:
        pytest.skip("STROM_KAFKA_BOOTSTRAP is set: the suite runs against that broker only")
    yield from _session_broker("tansu", start_tansu)


@pytest.fixture(scope="session")
def noida_broker() -> Iterator[Broker]:
    if _EXTERNAL:
        pytest.skip("STROM_KAFKA_BOOTSTRAP is set: the suite runs against that broker only")
    yield from _session_broker("noida", start_noida)


@pytest.fixture(scope="session")
def external_broker() -> Broker:
    if not _EXTERNAL:
        pytest.skip("STROM_KAFKA_BOOTSTRAP is not set")
    return Broker("external", _EXTERNAL, external=True)


@pytest.fixture(params=BROKER_NAMES)
def broker(request: pytest.FixtureRequest) -> Broker:
    b: Broker = request.getfixturevalue(f"{request.param}_broker")
    needed: list[str] = []
    for mark in request.node.iter_markers("kafka_needs"):
        needed.extend(mark.args)
    unknown = [n for n in needed if n not in CAPABILITIES]
    if unknown:
        raise ValueError(f"kafka_needs: unknown capabilities {unknown}; see brokers.CAPABILITIES")
    missing = b.missing(needed)
    if missing:
        why = "; ".join(f"{cap}: {reason}" for cap, reason in missing.items())
        pytest.skip(f"{b.name} lacks {', '.join(missing)} ({why})")
    limited: list[str] = []
    for mark in request.node.iter_markers("kafka_limited"):
        limited.extend(mark.args)
    b.limited = frozenset(b.missing(limited))
    return b


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.skip(
            "kcat is not installed (scripts/_bootstrap.sh installs it with apt-get; "
            "run `apt-get install -y kcat`)"
        )
    return path
