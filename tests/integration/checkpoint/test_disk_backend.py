"""Whole jobs on the disk state backend: recovery, state larger than the cache, checkpoints
shared with the heap backend (also across a rescale), and TTL on processing time."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom import StreamExecutionEnvironment
from strom.functions import KeyedProcessFunction, MapFunction, RuntimeContext
from strom.runtime.checkpoint import ExternalizedCheckpointRetention
from strom.runtime.checkpoint.storage import find_latest
from strom.runtime.restart import RestartStrategies
from strom.state import StateTtlConfig, ValueStateDescriptor
from strom.testing import ManualClock, TestingSink, fail_once_at

pytestmark = pytest.mark.integration

WORDS = [f"w{i % 17}" for i in range(6000)]


def checkpointed_env(
    tmp_path: Path, parallelism: int, backend: str = "disk", cache_size: int = 4
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(40)
    env.enable_checkpointing(20)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    env.set_max_parallelism(32)
    if backend == "disk":
        # fewer cached entries than keys: every run evicts, writes back and reloads
        env.set_state_backend("disk", directory=tmp_path / "state", cache_size=cache_size)
    return env


def final_counts(results: list[tuple[str, int]]) -> dict[str, int]:
    final: dict[str, int] = {}
    for word, count in results:
        final[word] = max(final.get(word, 0), count)
    return final


def state_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "state"
    return [str(p) for p in root.rglob("*")] if root.exists() else []


@pytest.mark.parametrize("parallelism", [1, 4])
def test_injected_failure_restores_exactly_once_keyed_state(
    tmp_path: Path, parallelism: int
) -> None:
    random.seed(parallelism)
    env = checkpointed_env(tmp_path, parallelism)
    sink = TestingSink()
    (
        env.from_collection(WORDS)
        .map(fail_once_at(random.randrange(500, 4000) // parallelism))
        .map(lambda w: (w, 1))
        .key_by(lambda t: t[0])
        .sum(1)
        .uid("counts")
        .sink_to(sink)
    )
    client = env.execute_async("disk-recovery")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    expected = Counter(WORDS)
    assert final_counts(sink.results) == dict(expected)
    for word, n in expected.items():  # at-least-once output: every count was emitted
        assert {c for w, c in sink.results if w == word} == set(range(1, n + 1))
    assert state_files(tmp_path) == [], "every subtask removes its store when it ends"


SEEN_BYTES: list[int] = []
"""Largest store size the job below saw (module level: functions are copied per subtask)."""


class Remember(KeyedProcessFunction[int, int, tuple[int, int]]):
    """Keeps a 2 KB payload per key; checks now and then how much the stores hold on disk."""

    def __init__(self, state_root: str) -> None:
        self.state_root = state_root
        self.seen = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.payload = runtime_context.get_state(ValueStateDescriptor[str]("payload"))
        self.count = runtime_context.get_state(ValueStateDescriptor[int]("count"))

    def process_element(
        self, value: int, ctx: KeyedProcessFunction.Context
    ) -> Iterator[tuple[int, int]]:
        old = self.payload.value()
        assert old is None or old == str(value % 10) * 2048
        self.payload.update(str(value % 10) * 2048)
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        self.seen += 1
        if self.seen % 1000 == 0:
            SEEN_BYTES.append(_tree_size(self.state_root))
        yield (value, n)


def _tree_size(root: str) -> int:
    size = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                size += os.path.getsize(os.path.join(d, f))
            except OSError:  # another subtask finished and removed its store meanwhile
                pass
    return size


def test_state_larger_than_the_cache_lives_on_disk(tmp_path: Path) -> None:
    keys = 5000
    env = checkpointed_env(tmp_path, 2, cache_size=50)
    env.enable_checkpointing(200)
    sink = TestingSink()
    SEEN_BYTES.clear()
    items = [i % keys for i in range(2 * keys)]  # every key twice: the second read hits disk
    env.from_collection(items).key_by(lambda x: x).process(
        Remember(str(tmp_path / "state"))
    ).sink_to(sink)
    env.execute("larger-than-cache")
    assert sorted(sink.results) == sorted(
        [(k, 1) for k in range(keys)] + [(k, 2) for k in range(keys)]
    )
    # 5000 payloads of 2 KB are ~10 MB; 2 x 2 states x 50 cached entries hold ~0.2 MB of them
    assert max(SEEN_BYTES) > 8_000_000
    assert state_files(tmp_path) == []


def _retained_checkpoint(tmp_path: Path, backend: str, parallelism: int) -> str:
    env = checkpointed_env(tmp_path, parallelism, backend)
    env.get_checkpoint_config().set_externalized_checkpoint_retention(
        ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
    )
    env.from_collection(WORDS).uid("words").map(lambda w: (w, 1)).key_by(lambda t: t[0]).sum(1).uid(
        "counts"
    ).sink_to(TestingSink())
    env.execute(f"switch-{backend}")
    latest = find_latest(str(tmp_path / "ckpt"), f"switch-{backend}")
    assert latest is not None
    return latest


@pytest.mark.parametrize(
    ("old_backend", "new_backend", "old", "new"), [("heap", "disk", 1, 4), ("disk", "heap", 4, 2)]
)
def test_checkpoints_restore_into_the_other_backend_at_another_parallelism(
    tmp_path: Path, old_backend: str, new_backend: str, old: int, new: int
) -> None:
    path = _retained_checkpoint(tmp_path, old_backend, old)
    env = checkpointed_env(tmp_path, new, new_backend)
    env.restore_from(path, allow_non_restored_state=True)
    sink = TestingSink()
    env.from_collection(sorted(set(WORDS))).uid("more-words").map(lambda w: (w, 1)).key_by(
        lambda t: t[0]
    ).sum(1).uid("counts").sink_to(sink)
    env.execute("switched")
    assert final_counts(sink.results) == {w: n + 1 for w, n in Counter(WORDS).items()}


CLOCK = ManualClock(0)


class SetClock(MapFunction[tuple[str, int], str]):
    """Moves processing time to the record's time (chained, so before the keyed function)."""

    def map(self, value: tuple[str, int]) -> str:
        CLOCK.set(value[1])
        return value[0]


class CountWithTtl(KeyedProcessFunction[str, str, tuple[str, int]]):
    def open(self, runtime_context: RuntimeContext) -> None:
        descriptor = ValueStateDescriptor[int]("count")
        descriptor.enable_time_to_live(StateTtlConfig.new_builder(1000).build())
        self.count = runtime_context.get_state(descriptor)

    def process_element(
        self, value: str, ctx: KeyedProcessFunction.Context
    ) -> Iterator[tuple[str, int]]:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        yield (value, n)


@pytest.mark.parametrize("backend", ["heap", "disk"])
def test_ttl_follows_the_processing_time_clock(tmp_path: Path, backend: str) -> None:
    base = CLOCK() + 10_000  # the clock never runs backwards, so each run starts later
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_batch_size(1)  # the clock moves per record: no batch may run ahead of the state
    if backend == "disk":
        env.set_state_backend("disk", directory=tmp_path / "state", cache_size=1)
    env.set_processing_time_clock(CLOCK)
    records: list[Any] = [
        ("a", 0),
        ("b", 100),
        ("a", 999),  # 999 ms after a's last write: still counted
        ("a", 1998),  # 999 ms later again
        ("b", 1100),  # b was written at 100: expired at 1100
        ("a", 2998),  # 1000 ms after the last write: expired
    ]
    sink = TestingSink()
    env.from_collection([(k, base + t) for k, t in sorted(records, key=lambda r: r[1])]).map(
        SetClock()
    ).key_by(lambda k: k).process(CountWithTtl()).sink_to(sink)
    env.execute("ttl")
    assert sink.results == [("a", 1), ("b", 1), ("a", 2), ("b", 1), ("a", 3), ("a", 1)]
