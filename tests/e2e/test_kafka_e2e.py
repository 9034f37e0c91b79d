"""End to end: Kafka → job (keyed counts) → Kafka, with ``kill -9`` of the job process
mid-stream and a restart from the latest checkpoint (``strom run --from-checkpoint latest``).

The output is checked record by record against the input:

* at-least-once (both brokers): every count 1..n of every word is in the output topic at
  least once, and the highest count of each word is exact (exactly-once state);
* exactly-once (brokers with faithful transactions: noida-db or a real Kafka): a
  ``read_committed`` consumer sees every ``word,count`` row exactly once — nothing the killed
  attempt wrote after its last checkpoint, nothing lost.

The brokers are the Kafka suite's (``tests/integration/kafka/brokers.py``), started here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

KAFKA_TESTS = Path(__file__).parents[1] / "integration" / "kafka"
sys.path.insert(0, str(KAFKA_TESTS))
from brokers import Broker, start_noida, start_tansu  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

JOB = Path(__file__).parent / "jobs" / "kafka_keyed_count.py"
STROM = Path(sys.executable).parent / "strom"
WORDS = [f"w{(i * 7919) % 23}" for i in range(12_000)]
EXPECTED = Counter(WORDS)
EXTERNAL = os.environ.get("STROM_KAFKA_BOOTSTRAP", "").strip()


@pytest.fixture(scope="module", params=["external"] if EXTERNAL else ["tansu", "noida"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "external":
        yield Broker("external", EXTERNAL, external=True)
        return
    proc = (start_tansu if request.param == "tansu" else start_noida)()
    try:
        yield Broker(proc.name, proc.bootstrap)
    finally:
        proc.stop()


def _cmd(
    broker: Broker,
    topics: tuple[str, str],
    workdir: Path,
    guarantee: str,
    prefix: str,
    *,
    restore: bool = False,
) -> list[str]:
    cmd = [str(STROM), "run", "-p", "2"]
    if restore:
        cmd += ["--from-checkpoint", "latest"]
    return [*cmd, str(JOB), "--", broker.bootstrap, *topics, str(workdir), guarantee, prefix]


def _kill_mid_stream_and_resume(broker: Broker, tmp_path: Path, guarantee: str) -> list[str]:
    src = broker.create_topic(partitions=4, prefix="e2e-in")
    out = broker.create_topic(partitions=3, prefix="e2e-out")
    broker.produce(src, WORDS)
    for partition in range(4):  # the job's end-of-stream marker, one per partition
        broker.produce(src, ["END"], partition=partition)
    prefix = broker.unique("e2e")
    cmd = _cmd(broker, (src, out), tmp_path, guarantee, prefix)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=JOB.parent)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "ckpt").glob("*/*/chk-*/_metadata")):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.3)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    if proc.returncode == 0:
        pytest.fail("the job finished before it could be killed: make it slower")
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    restored = subprocess.Popen(
        _cmd(broker, (src, out), tmp_path, guarantee, prefix, restore=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=JOB.parent,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        _, err = restored.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.kill(restored.pid, signal.SIGABRT)  # faulthandler prints every thread's stack
        _, err = restored.communicate(timeout=30)
        pytest.fail("the restored job hung; its threads:\n" + err.decode()[-8000:])
    assert restored.returncode == 0, err.decode()[-5000:]
    read_committed = guarantee == "exactly_once"
    rows = [
        (r.value or b"").decode()
        for r in broker.consume_all(out, read_committed=read_committed, min_records=len(WORDS))
    ]
    return rows


def _expected_rows() -> list[str]:
    return [f"{w},{c}" for w, n in EXPECTED.items() for c in range(1, n + 1)]


def test_kill_9_at_least_once(broker: Broker, tmp_path: Path) -> None:
    rows = _kill_mid_stream_and_resume(broker, tmp_path, "at_least_once")
    assert set(rows) == set(_expected_rows()), "an update was lost"
    final: dict[str, int] = {}
    for row in rows:
        word, count = row.split(",")
        final[word] = max(final.get(word, 0), int(count))
    assert final == dict(EXPECTED)


def test_kill_9_exactly_once(broker: Broker, tmp_path: Path) -> None:
    if broker.name == "tansu":
        pytest.skip("tansu lacks faithful transactions (read_committed shows aborted records)")
    rows = _kill_mid_stream_and_resume(broker, tmp_path, "exactly_once")
    assert Counter(rows) == Counter(_expected_rows())
