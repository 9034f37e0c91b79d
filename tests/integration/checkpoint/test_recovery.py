"""Checkpoints and recovery through whole jobs: injected failures, restore, rescale."""

import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from strom import JobExecutionError, StreamExecutionEnvironment
from strom.functions import MapFunction
from strom.runtime.checkpoint import CheckpointingMode, ExternalizedCheckpointRetention
from strom.runtime.checkpoint.storage import CheckpointRestoreError, find_latest, resolve
from strom.runtime.restart import RestartStrategies
from strom.testing import TestingSink, fail_once_at

# StridedSource is shared with the e2e job, which finds it next to its script
sys.path.insert(0, str(Path(__file__).parents[2] / "e2e" / "jobs"))
from strided_source import StridedSource

pytestmark = pytest.mark.integration

WORDS = [f"w{i % 17}" for i in range(6000)]


class Jitter(MapFunction[Any, Any]):
    """Sleeps now and then so checkpoints land between records at varying points."""

    def map(self, value: Any) -> Any:
        if random.random() < 0.003:
            time.sleep(0.002)
        return value


def checkpointed_env(
    tmp_path: Path, parallelism: int, interval: int = 20
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(40)
    env.enable_checkpointing(interval)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    return env


def final_counts(results: list[tuple[str, int]]) -> dict[str, int]:
    final: dict[str, int] = {}
    for word, count in results:
        final[word] = max(final.get(word, 0), count)
    return final


def assert_exactly_once_state_at_least_once_output(results: list[tuple[str, int]]) -> None:
    expected = Counter(WORDS)
    # exactly-once state: the final count of each key equals its number of inputs
    assert final_counts(results) == dict(expected)
    # at-least-once output: every intermediate count was emitted (some maybe twice)
    for word, n in expected.items():
        assert {c for w, c in results if w == word} == set(range(1, n + 1))


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("source", ["collection", "source_function", "file"])
@pytest.mark.parametrize("seed", [1, 2])
def test_injected_failure_restores_exactly_once_keyed_state(
    tmp_path: Path, parallelism: int, source: str, seed: int
) -> None:
    random.seed(seed)
    env = checkpointed_env(tmp_path, parallelism)
    if source == "collection":
        stream = env.from_collection(WORDS)
    elif source == "source_function":
        stream = env.add_source(StridedSource(WORDS))  # seed §3.2
    else:
        data = tmp_path / "input"
        data.mkdir()
        for i in range(3):
            (data / f"part-{i}.txt").write_text("\n".join(WORDS[i::3]) + "\n")
        stream = env.read_text_file(str(data))
    sink = TestingSink()
    fail_at = random.randrange(500, 4000) // parallelism
    (
        stream.map(Jitter())
        .map(fail_once_at(fail_at))
        .map(lambda w: (w, 1))
        .key_by(lambda t: t[0])
        .sum(1)
        .uid("counts")
        .sink_to(sink)
    )
    client = env.execute_async(f"recovery-{source}")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    assert_exactly_once_state_at_least_once_output(sink.results)


def test_at_least_once_mode_loses_nothing(tmp_path: Path) -> None:
    env = checkpointed_env(tmp_path, 3)
    env.enable_checkpointing(20, CheckpointingMode.AT_LEAST_ONCE)
    sink = TestingSink()
    a = env.from_collection(WORDS[:3000])
    b = env.from_collection(WORDS[3000:])
    (
        a.union(b)
        .map(Jitter())
        .map(fail_once_at(700))
        .map(lambda w: (w, 1))
        .key_by(lambda t: t[0])
        .sum(1)
        .sink_to(sink)
    )
    env.execute("alo")
    final = final_counts(sink.results)
    expected = Counter(WORDS)
    # at-least-once: a restore may count some records twice, never lose one
    assert set(final) == set(expected)
    assert all(final[w] >= expected[w] for w in expected)


def test_checkpoints_complete_and_are_cleaned_up_on_finish(tmp_path: Path) -> None:
    env = checkpointed_env(tmp_path, 2, interval=10)
    env.from_collection(WORDS).map(Jitter()).key_by(lambda w: w).map(lambda w: w).sink_to(
        TestingSink()
    )
    client = env.execute_async("cleanup")
    client.wait(30)
    stats = client.checkpoint_stats()  # type: ignore[attr-defined]
    assert stats, "at least the final checkpoint completes"
    assert all(s.size_bytes > 0 and s.duration_ms >= 0 for s in stats)
    assert [s.checkpoint_id for s in stats] == sorted(s.checkpoint_id for s in stats)
    # DELETE_ON_CANCELLATION (default): a finished job leaves no checkpoints behind
    assert find_latest(str(tmp_path / "ckpt"), "cleanup") is None


def _run_to_retained_checkpoint(tmp_path: Path, parallelism: int, name: str) -> str:
    env = checkpointed_env(tmp_path, parallelism, interval=10)
    env.get_checkpoint_config().set_externalized_checkpoint_retention(
        ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
    )
    env.set_max_parallelism(32)
    env.from_collection(WORDS).uid("words").map(lambda w: (w, 1)).uid("pairs").key_by(
        lambda t: t[0]
    ).sum(1).uid("counts").sink_to(TestingSink()).uid("sink")
    env.execute(name)
    latest = find_latest(str(tmp_path / "ckpt"), name)
    assert latest is not None
    return latest


@pytest.mark.parametrize(("old", "new"), [(1, 4), (4, 2)])
def test_restore_at_another_parallelism_keeps_keyed_state(
    tmp_path: Path, old: int, new: int
) -> None:
    path = _run_to_retained_checkpoint(tmp_path, old, "rescale")
    env = checkpointed_env(tmp_path, new)
    env.set_max_parallelism(32)
    # the new job reads new words (its source has a new uid, the old source's state is dropped)
    env.restore_from(path, allow_non_restored_state=True)
    sink = TestingSink()
    # the restored job sees each word once more: counts continue from the checkpoint
    env.from_collection(sorted(set(WORDS))).uid("more-words").map(lambda w: (w, 1)).key_by(
        lambda t: t[0]
    ).sum(1).uid("counts").sink_to(sink)
    env.execute("rescale-2")
    assert final_counts(sink.results) == {w: n + 1 for w, n in Counter(WORDS).items()}


def test_restore_latest_and_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    path = _run_to_retained_checkpoint(tmp_path, 1, "bad")

    def restore(p: str, **kw: Any) -> None:
        env = checkpointed_env(tmp_path, 1)
        env.set_max_parallelism(32)
        env.restore_from(p, allow_non_restored_state=True, **kw)
        env.from_collection(["x"]).uid("other").map(lambda w: (w, 1)).key_by(lambda t: t[0]).sum(
            1
        ).uid("counts").sink_to(TestingSink())
        env.execute("bad")

    restore("latest")  # resolves to the newest completed checkpoint of job "bad"

    # state file corrupted -> error naming the file, never a silent fresh start
    state_file = sorted(Path(path).glob("*.state"))[0]
    original = state_file.read_bytes()
    state_file.write_bytes(original[:-3] + b"xyz")
    with pytest.raises(JobExecutionError, match=rf"{state_file.name}: state file is corrupt"):
        restore(path)
    state_file.unlink()
    with pytest.raises(
        JobExecutionError, match=rf"{state_file.name}: state file listed .* missing"
    ):
        restore(path)
    state_file.write_bytes(original)

    # metadata of another format / torn metadata
    meta = Path(path) / "_metadata"
    good = meta.read_text()
    meta.write_text(json.dumps({**json.loads(good), "format": 99}))
    with pytest.raises(JobExecutionError, match="unsupported metadata format 99"):
        restore(path)
    meta.unlink()
    with pytest.raises(JobExecutionError, match="no checkpoint metadata"):
        restore(path)
    assert find_latest(str(tmp_path / "ckpt"), "bad") != path  # a torn checkpoint is skipped
    meta.write_text(good)

    with pytest.raises(CheckpointRestoreError, match="no completed checkpoint of job 'bad'"):
        resolve("latest", str(tmp_path / "nothing-here"), "bad")


def test_state_for_unknown_operator_needs_allow_non_restored_state(tmp_path: Path) -> None:
    path = _run_to_retained_checkpoint(tmp_path, 1, "uids")

    def run(**kw: Any) -> list[Any]:
        env = checkpointed_env(tmp_path, 1)
        env.set_max_parallelism(32)
        env.restore_from(path, **kw)
        sink = TestingSink()
        env.from_collection(["w1"]).uid("fresh-words").map(lambda w: (w, 1)).key_by(
            lambda t: t[0]
        ).sum(1).uid("renamed").sink_to(sink).uid("sink")
        env.execute("uids")
        return sink.results

    with pytest.raises(JobExecutionError, match=r"operator\(s\) counts, words matches no operator"):
        run()
    assert run(allow_non_restored_state=True) == [("w1", 1)]


def test_max_parallelism_mismatch_is_rejected(tmp_path: Path) -> None:
    path = _run_to_retained_checkpoint(tmp_path, 1, "maxp")
    env = checkpointed_env(tmp_path, 1)
    env.set_max_parallelism(64)
    env.restore_from(path)
    env.from_collection(["x"]).map(lambda w: (w, 1)).key_by(lambda t: t[0]).sum(1).uid(
        "counts"
    ).sink_to(TestingSink())
    with pytest.raises(JobExecutionError, match="max parallelism 32"):
        env.execute("maxp")


def test_too_many_failed_checkpoints_fail_the_job(tmp_path: Path) -> None:
    class Stall(MapFunction[int, int]):
        def map(self, value: int) -> int:
            time.sleep(0.05)  # each batch takes longer than the checkpoint timeout
            return value

    env = checkpointed_env(tmp_path, 1, interval=5)
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.set_batch_size(10)
    env.get_checkpoint_config().set_checkpoint_timeout(20)
    env.get_checkpoint_config().set_tolerable_checkpoint_failure_number(1)
    env.from_collection(range(500)).rebalance().map(Stall()).set_parallelism(
        1
    ).disable_chaining().sink_to(TestingSink())
    with pytest.raises(JobExecutionError, match="checkpoint\\(s\\) failed in a row"):
        env.execute("stall")


def test_savepoint_through_job_client(tmp_path: Path) -> None:
    from strom.testing import TestingSource

    env = checkpointed_env(tmp_path, 2, interval=60_000)
    items: list[Any] = [*range(100), TestingSource.PAUSE(5.0), *range(100, 200)]
    env.from_source(TestingSource(items)).key_by(lambda x: x % 3).sum().uid("sum").sink_to(
        TestingSink()
    )
    client = env.execute_async("sp")
    time.sleep(0.3)
    path = client.stop_with_savepoint(str(tmp_path / "savepoints"))  # type: ignore[attr-defined]
    assert Path(path, "_metadata").exists()
    from strom.runtime.checkpoint.storage import load

    restored = load(path)
    assert restored.is_savepoint
    assert set(restored.operators) >= {"sum"}


class JsonishSerializer:
    """A custom state serializer (pickle wrapped with a marker), to prove it is used."""

    def dumps(self, value: Any) -> bytes:
        import pickle

        return b"JSONISH" + pickle.dumps(value)

    def loads(self, data: bytes) -> Any:
        import pickle

        assert data.startswith(b"JSONISH"), "state not written by this serializer"
        return pickle.loads(data[7:])


def test_custom_state_serializer_writes_checkpoints_and_mismatch_is_named(tmp_path: Path) -> None:
    env = checkpointed_env(tmp_path, 2)
    env.set_state_backend("heap", serializer=JsonishSerializer())
    env.get_checkpoint_config().set_externalized_checkpoint_retention(
        ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
    )
    sink = TestingSink()
    env.from_collection(WORDS).map(fail_once_at(2000)).map(lambda w: (w, 1)).key_by(
        lambda t: t[0]
    ).sum(1).uid("counts").sink_to(sink)
    env.execute("serde")
    assert final_counts(sink.results) == dict(Counter(WORDS))  # restored through it
    path = find_latest(str(tmp_path / "ckpt"), "serde")
    assert path is not None
    state = sorted(Path(path).glob("*.state"))[0].read_bytes()
    assert state.startswith(b"JSONISH")
    env2 = checkpointed_env(tmp_path, 1)  # default pickle serializer
    env2.restore_from(path, allow_non_restored_state=True)
    env2.from_collection(["x"]).uid("other").sink_to(TestingSink())
    with pytest.raises(JobExecutionError, match=r"written with serializer .*JsonishSerializer"):
        env2.execute("serde")
