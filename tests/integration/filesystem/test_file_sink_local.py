"""The rolling FileSink on the local filesystem (and fsspec's memory filesystem): writers
driven directly with a ManualClock, then whole jobs with checkpoints, an injected failure and
a restart, checked for exactly-once output."""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pytest

from strom import JobExecutionError, StreamExecutionEnvironment
from strom.connectors.base import DeliveryGuarantee, WriterContext
from strom.connectors.filesystem import (
    BasePathBucketAssigner,
    BucketContext,
    DateTimeBucketAssigner,
    DefaultRollingPolicy,
    FileSink,
    FileSinkWriter,
    OnCheckpointRollingPolicy,
    OutputFileConfig,
)
from strom.errors import ConnectorError, InvalidJobError
from strom.formats import JsonSchema, SerializationError
from strom.runtime.restart import RestartStrategies
from strom.testing import ManualClock, fail_once_at

pytestmark = pytest.mark.integration

IN_PROGRESS = re.compile(r"\.part-(\d+)-(\d+)\.inprogress\.[0-9a-f]{32}")
FINISHED = re.compile(r"part-(\d+)-(\d+)")


def open_writer(
    sink: FileSink,
    state: list[Any] | None = None,
    *,
    subtask: int = 0,
    parallelism: int = 1,
    clock: ManualClock | None = None,
) -> FileSinkWriter:
    ctx = WriterContext(
        subtask_index=subtask, parallelism=parallelism, processing_time=clock or ManualClock()
    )
    w = sink.create_writer(ctx)
    w.open(state)
    return w


def crash(w: FileSinkWriter) -> None:
    """The process dies: open files are closed by the OS, nothing is cleaned up."""
    for part in w._open_parts.values():
        part.writer._fh.close()  # type: ignore[attr-defined]


def files(base: Path) -> tuple[dict[str, bytes], list[str]]:
    """(finished files by path relative to base, hidden files) below ``base``."""
    finished: dict[str, bytes] = {}
    hidden: list[str] = []
    for p in sorted(base.rglob("*")):
        if p.is_file():
            rel = p.relative_to(base).as_posix()
            if p.name.startswith("."):
                hidden.append(rel)
            else:
                finished[rel] = p.read_bytes()
    return finished, hidden


def lines(base: Path) -> Counter[str]:
    return Counter(line for data in files(base)[0].values() for line in data.decode().splitlines())


def flat(base: Path) -> FileSink:
    return FileSink(base, bucket_assigner=BasePathBucketAssigner())


# -- the part file lifecycle ------------------------------------------------------------------


def test_parts_finish_only_when_their_checkpoint_completes(tmp_path: Path) -> None:
    sink = flat(tmp_path)
    assert sink.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE
    w = open_writer(sink)
    w.write(["a", "b"], None)
    finished, hidden = files(tmp_path)
    assert finished == {}
    assert len(hidden) == 1
    assert IN_PROGRESS.fullmatch(hidden[0])
    state = w.snapshot_state(1)
    pickle.dumps(state)
    w.write(["c"], None)  # after the barrier: the next transaction, a new part
    finished, hidden = files(tmp_path)
    assert finished == {}
    assert len(hidden) == 2
    w.notify_checkpoint_complete(1)
    finished, hidden = files(tmp_path)
    assert finished == {"part-0-0": b"a\nb\n"}
    assert [IN_PROGRESS.fullmatch(h).group(2) for h in hidden] == ["1"]  # type: ignore[union-attr]
    w.flush(True)
    w.snapshot_state(2)
    w.notify_checkpoint_complete(2)
    w.close()
    assert files(tmp_path) == ({"part-0-0": b"a\nb\n", "part-0-1": b"c\n"}, [])


def test_close_discards_the_open_part_and_an_aborted_checkpoint_commits_later(
    tmp_path: Path,
) -> None:
    w = open_writer(flat(tmp_path))
    w.write(["a"], None)
    w.snapshot_state(1)
    w.notify_checkpoint_aborted(1)
    w.write(["b"], None)
    w.snapshot_state(2)
    w.notify_checkpoint_complete(2)  # commits the parts of checkpoints 1 and 2
    w.write(["lost"], None)
    w.close()
    assert files(tmp_path) == ({"part-0-0": b"a\n", "part-0-1": b"b\n"}, [])


def test_empty_checkpoints_make_no_files(tmp_path: Path) -> None:
    w = open_writer(flat(tmp_path))
    for cid in (1, 2):
        w.snapshot_state(cid)
        w.notify_checkpoint_complete(cid)
    w.close()
    assert files(tmp_path) == ({}, [])


def test_output_file_config_and_encoders(tmp_path: Path) -> None:
    sink = FileSink(
        tmp_path,
        encoder=JsonSchema(),
        bucket_assigner=BasePathBucketAssigner(),
        output_file_config=OutputFileConfig(part_prefix="events", part_suffix=".jsonl"),
    )
    w = open_writer(sink, subtask=2, parallelism=3)
    w.write([{"a": 1}, {"b": [2]}], None)
    assert re.fullmatch(r"\.events-2-0\.jsonl\.inprogress\.[0-9a-f]+", files(tmp_path)[1][0])
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert files(tmp_path)[0] == {"events-2-0.jsonl": b'{"a":1}\n{"b":[2]}\n'}

    raw = FileSink(
        tmp_path / "raw",
        encoder=lambda v: bytes([v]),
        record_delimiter=b"",
        bucket_assigner=BasePathBucketAssigner(),
    )
    w = open_writer(raw)
    w.write([1, 2, 3], None)
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert (tmp_path / "raw" / "part-0-0").read_bytes() == b"\x01\x02\x03"
    # the default encoder writes str() of any record, one per line
    w = open_writer(flat(tmp_path / "default"))
    w.write([1, (2, "x"), None], None)
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert (tmp_path / "default" / "part-0-0").read_text() == "1\n(2, 'x')\nNone\n"


# -- rolling -----------------------------------------------------------------------------------


def test_rolls_by_size(tmp_path: Path) -> None:
    policy = DefaultRollingPolicy(part_size_bytes=10)
    w = open_writer(FileSink(tmp_path, rolling_policy=policy, bucket_assigner=lambda v, c: ""))
    w.write(["1234", "1234", "1234"], None)  # 5 bytes each with "\n": two per part
    w.write(["x" * 20], None)  # larger than a part: a part of its own
    w.write(["y"], None)
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    finished, hidden = files(tmp_path)
    assert hidden == []
    assert finished == {
        "part-0-0": b"1234\n1234\n",
        "part-0-1": b"1234\n",
        "part-0-2": b"x" * 20 + b"\n",
        "part-0-3": b"y\n",
    }


def test_rolls_by_age_and_by_inactivity(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    policy = DefaultRollingPolicy(rollover_interval_s=10, inactivity_interval_s=3)
    w = open_writer(
        FileSink(tmp_path, rolling_policy=policy, bucket_assigner=lambda v, c: ""), clock=clock
    )
    w.write(["a"], None)
    clock.advance(2_000)
    w.write(["b"], None)  # active: same part
    clock.advance(2_999)
    w.write(["c"], None)  # inactive for 2.999 s < 3 s: same part
    clock.advance(3_000)
    w.write(["d"], None)  # inactive for 3 s: rolled first, "d" starts part 1
    for _ in range(5):
        clock.advance(2_000)
        w.write(["e"], None)  # never inactive, but part 1 turns 10 s old at the 5th write
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert files(tmp_path)[0] == {
        "part-0-0": b"a\nb\nc\n",
        "part-0-1": b"d\ne\ne\ne\ne\n",
        "part-0-2": b"e\n",
    }


def test_on_checkpoint_policy_rolls_only_at_checkpoints(tmp_path: Path) -> None:
    clock = ManualClock()
    sink = FileSink(
        tmp_path, rolling_policy=OnCheckpointRollingPolicy(), bucket_assigner=lambda v, c: v[0]
    )
    w = open_writer(sink, clock=clock)
    for _ in range(100):
        w.write(["a1", "b1", "a2"], None)
        clock.advance(3_600_000)
    w.snapshot_state(1)
    w.write(["a3"], None)
    w.snapshot_state(2)
    w.notify_checkpoint_complete(2)
    w.close()
    finished = files(tmp_path)[0]
    assert sorted(finished) == ["a/part-0-0", "a/part-0-2", "b/part-0-1"]
    assert finished["a/part-0-0"] == b"a1\na2\n" * 100
    assert finished["a/part-0-2"] == b"a3\n"


def test_rolling_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="part_size_bytes"):
        DefaultRollingPolicy(part_size_bytes=0)
    with pytest.raises(ValueError, match="inactivity_interval_s"):
        DefaultRollingPolicy(inactivity_interval_s=float("nan"))
    with pytest.raises(ValueError, match="hidden"):
        OutputFileConfig(part_prefix=".part")
    with pytest.raises(ValueError, match="separator"):
        OutputFileConfig(part_suffix="/x")


# -- buckets -----------------------------------------------------------------------------------


def test_date_time_buckets_use_record_timestamps_else_processing_time(tmp_path: Path) -> None:
    clock = ManualClock(int(datetime(2024, 3, 1, 23, 30, tzinfo=UTC).timestamp() * 1000))
    w = open_writer(FileSink(tmp_path), clock=clock)  # DateTimeBucketAssigner by default
    w.write(["no timestamp"], None)
    ts = int(datetime(2024, 2, 29, 7, 5, tzinfo=UTC).timestamp() * 1000)
    w.write(["at 07:05", "an hour later"], [ts, ts + 3_600_000])
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert files(tmp_path)[0] == {
        "2024-03-01--23/part-0-0": b"no timestamp\n",
        "2024-02-29--07/part-0-1": b"at 07:05\n",
        "2024-02-29--08/part-0-2": b"an hour later\n",
    }
    by_minute = DateTimeBucketAssigner("%Y/%m/%d/%H%M", use_record_timestamp=False)
    ctx = BucketContext(clock)
    ctx.timestamp = ts
    assert by_minute.get_bucket_id("x", ctx) == "2024/03/01/2330"


def test_custom_bucket_ids_and_bad_ones(tmp_path: Path) -> None:
    def by_key(value: Any, ctx: BucketContext) -> str:
        return str(value["bucket"])

    w = open_writer(FileSink(tmp_path, bucket_assigner=by_key, encoder=lambda v: v["x"].encode()))
    w.write([{"bucket": "a/b/", "x": "1"}, {"bucket": "./a//b", "x": "2"}], None)
    assert len(files(tmp_path)[1]) == 1  # "a/b/" and "./a//b" are the same bucket
    with pytest.raises(ValueError, match=r"bucket id '\.\./up'.*'bucket': '\.\./up'"):
        w.write([{"bucket": "../up", "x": "3"}], None)
    with pytest.raises(ValueError, match="relative path"):
        w.write([{"bucket": "/abs", "x": "3"}], None)
    w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    assert files(tmp_path)[0] == {"a/b/part-0-0": b"1\n2\n"}


# -- restore, counters, leftovers -------------------------------------------------------------


def test_restore_finishes_pending_parts_and_counters_continue(tmp_path: Path) -> None:
    sink = flat(tmp_path)
    w = open_writer(sink)
    w.write(["a"], None)
    w.notify_checkpoint_complete(0)  # nothing pending yet: a no-op
    state = w.snapshot_state(1)  # checkpoint 1 completes; the process dies before notify
    w.write(["b"], None)
    w.snapshot_state(2)  # pre-committed, checkpoint 2 never completes
    w.write(["c"], None)  # open when the process dies: no close()
    crash(w)
    assert files(tmp_path)[0] == {}

    r = open_writer(sink, pickle.loads(pickle.dumps(state)))
    finished, hidden = files(tmp_path)
    assert finished == {"part-0-0": b"a\n"}  # the restored checkpoint's part is finished
    assert len(hidden) == 2  # leftovers stay until the first checkpoint after the restore
    assert r.next_counter == 3  # past every name the old attempt used
    r.write(["b", "c"], None)  # the replay
    r.snapshot_state(3)
    r.notify_checkpoint_complete(3)
    r.close()
    assert files(tmp_path) == ({"part-0-0": b"a\n", "part-0-3": b"b\nc\n"}, [])


def test_names_never_collide_across_restores_rescales_and_reruns(tmp_path: Path) -> None:
    sink = flat(tmp_path)
    writers = [open_writer(sink, subtask=i, parallelism=4) for i in range(4)]
    for round_ in range(3):
        for i, w in enumerate(writers):
            w.write([f"{round_}-{i}"], None)
    states = [w.snapshot_state(1) for w in writers]
    for w in writers[:2]:
        w.notify_checkpoint_complete(1)  # subtasks 2 and 3 never hear of it
    # restore at parallelism 2: entries are dealt round-robin, in acknowledgement order
    entries = [e for s in reversed(states) for e in s]
    restored = [open_writer(sink, entries[i::2], subtask=i, parallelism=2) for i in range(2)]
    assert {r.next_counter for r in restored} == {1}  # subtask i used counter 0 before
    for r in restored:
        r.write(["more"], None)
        r.snapshot_state(2)
        r.notify_checkpoint_complete(2)
        r.close()
    again = open_writer(sink)  # a fresh job into the same directory continues the numbering
    assert again.next_counter == 2
    again.close()
    finished = files(tmp_path)[0]
    assert sorted(finished) == [
        "part-0-0", "part-0-1", "part-1-0", "part-1-1", "part-2-0", "part-3-0"
    ]  # fmt: skip
    assert lines(tmp_path) == Counter(
        [f"{r}-{i}" for r in range(3) for i in range(4)] + ["more"] * 2
    )


def test_leftovers_of_old_subtasks_are_removed_after_the_first_checkpoint(tmp_path: Path) -> None:
    sink = flat(tmp_path)
    old = [open_writer(sink, subtask=i, parallelism=3) for i in range(3)]
    states = []
    for i, w in enumerate(old):
        w.write([f"kept-{i}"], None)
        states.append(w.snapshot_state(1))
        w.write([f"lost-{i}"], None)
        w.snapshot_state(2)  # never completes
        w.write([f"open-{i}"], None)
        crash(w)
    assert len(files(tmp_path)[1]) == 9
    entries = [e for s in states for e in s]
    new = [open_writer(sink, entries[i::2], subtask=i, parallelism=2) for i in range(2)]
    assert len(files(tmp_path)[1]) == 6  # restored parts finished; leftovers wait
    new[0].write(["new-0"], None)
    new[0].snapshot_state(3)
    new[0].notify_checkpoint_complete(3)
    # subtask 0 of 2 removed what old subtasks 0 and 2 left, never its own new part
    remaining = files(tmp_path)[1]
    assert sorted(IN_PROGRESS.fullmatch(h).group(1) for h in remaining) == ["1", "1"]  # type: ignore[union-attr]
    new[1].snapshot_state(3)
    new[1].notify_checkpoint_complete(3)
    for w in new:
        w.close()
    assert files(tmp_path)[1] == []
    assert lines(tmp_path) == Counter(["kept-0", "kept-1", "kept-2", "new-0"])


def test_commit_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    sink = flat(tmp_path)
    w = open_writer(sink)
    w.write(["a"], None)
    state = w.snapshot_state(1)
    w.notify_checkpoint_complete(1)
    w.close()
    open_writer(sink, state).close()  # committed already: a no-op
    assert files(tmp_path) == ({"part-0-0": b"a\n"}, [])

    # a crash between the hard link and the unlink of a commit: recovery finishes it
    w = open_writer(sink)
    w.write(["b"], None)
    state = w.snapshot_state(1)
    record = state[0][1]["parts"][0]
    os.link(record["temp"], record["final"])
    open_writer(sink, state).close()
    assert files(tmp_path) == ({"part-0-0": b"a\n", "part-0-1": b"b\n"}, [])

    # another writer's file where ours should go: an error, not an overwrite
    w = open_writer(sink)
    w.write(["c"], None)
    state = w.snapshot_state(1)
    (tmp_path / state[0][1]["parts"][0]["final"]).write_text("someone else\n")
    with pytest.raises(ConnectorError, match="already exists"):
        w.notify_checkpoint_complete(1)
    w.close()

    # parts gone entirely: an error in normal operation, a warning when restoring
    w = open_writer(flat(tmp_path / "gone"))
    w.write(["d"], None)
    state = w.snapshot_state(1)
    os.unlink(state[0][1]["parts"][0]["temp"])
    with pytest.raises(ConnectorError, match="data is gone"):
        w.notify_checkpoint_complete(1)
    open_writer(flat(tmp_path / "gone"), state).close()


def test_memory_filesystem_uses_the_generic_rename_path() -> None:
    fs = fsspec.filesystem("memory")
    base = f"memory://strom-file-sink-{random.randrange(1 << 30)}"
    sink = FileSink(base, bucket_assigner=lambda v, c: f"b{v % 2}")
    w = open_writer(sink)
    w.write([1, 2, 3], None)
    state = w.snapshot_state(1)
    w.write([4], None)
    w.snapshot_state(2)
    root = fs._strip_protocol(base)
    assert not [p for p in fs.find(root) if not p.rsplit("/", 1)[1].startswith(".")]
    r = open_writer(sink, state)  # restore: finish checkpoint 1's parts
    r.write([4], None)
    r.snapshot_state(3)
    r.notify_checkpoint_complete(3)  # commits, then removes the leftover of checkpoint 2
    r.close()
    open_writer(sink, state).close()  # idempotent through fsspec as well
    found = {p[len(root) + 1 :]: fs.cat(p) for p in fs.find(root)}
    assert found == {"b1/part-0-0": b"1\n3\n", "b0/part-0-1": b"2\n", "b0/part-0-3": b"4\n"}
    fs.rm(root, recursive=True)


# -- bad input ---------------------------------------------------------------------------------


def test_encoder_failures_name_the_record(tmp_path: Path) -> None:
    w = open_writer(FileSink(tmp_path, encoder=JsonSchema(), bucket_assigner=lambda v, c: ""))
    with pytest.raises(SerializationError) as e:
        w.write([{"ok": 1}, {"bad": {1, 2}}], None)
    assert "{'bad': {1, 2}}" in str(e.value)
    assert "subtask 0" in str(e.value)
    assert e.value.index == 1
    w.close()

    def fussy(v: Any) -> bytes:
        if v == "boom":
            raise KeyError("no")
        return b"ok" if v != "str" else v

    w = open_writer(FileSink(tmp_path, encoder=fussy, bucket_assigner=lambda v, c: ""))
    with pytest.raises(SerializationError, match=r"encoder raised KeyError.*element: 'boom'"):
        w.write(["fine", "boom"], None)
    with pytest.raises(SerializationError, match=r"returned str, not bytes; element: 'str'"):
        w.write(["str"], None)
    w.close()
    assert files(tmp_path)[1] == []


def test_unwritable_base_path_fails_at_open_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    sink = FileSink(blocker / "out")
    with pytest.raises(ConnectorError, match=re.escape(str(blocker / "out"))):
        open_writer(sink)
    with pytest.raises(InvalidJobError, match="nosuchfs"):
        FileSink("nosuchfs://x/y")
    with pytest.raises(InvalidJobError, match="encoder"):
        FileSink(tmp_path, encoder=42)  # type: ignore[arg-type]


# -- whole jobs --------------------------------------------------------------------------------

N = 3000


def job(tmp_path: Path, parallelism: int, sink: FileSink, fail_at: int | None) -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(25)
    env.enable_checkpointing(20)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    # A checkpoint that hangs is aborted soon and the next one commits its parts: a race in
    # CheckpointCoordinator.acknowledge can leave a fully acknowledged checkpoint pending.
    env.get_checkpoint_config().set_checkpoint_timeout(2000)
    env.get_checkpoint_config().set_tolerable_checkpoint_failure_number(5)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    stream = env.from_collection(range(N)).rebalance()
    if fail_at is not None:
        stream = stream.map(fail_once_at(fail_at))
    stream.map(_slow_now_and_then).sink_to(sink)
    client = env.execute_async("file-sink")
    client.wait(60)
    assert client.restarts == (0 if fail_at is None else 1)  # type: ignore[attr-defined]


def _slow_now_and_then(v: int) -> int:
    if v % 5 == 0:  # the job takes a while: checkpoints complete before and after the failure
        time.sleep(0.001)
    return v


@pytest.mark.e2e
@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("seed", [1, 2])
def test_job_with_a_failure_writes_every_record_exactly_once(
    tmp_path: Path, parallelism: int, seed: int
) -> None:
    random.seed(seed)
    out = tmp_path / "out"
    sink = FileSink(
        out,
        bucket_assigner=lambda v, c: f"mod{v % 3}",
        rolling_policy=DefaultRollingPolicy(part_size_bytes=400),
    )
    job(tmp_path, parallelism, sink, fail_at=random.randrange(N // 4, 3 * N // 4) // parallelism)
    finished, hidden = files(out)
    assert hidden == []  # restored parts finished, the failed attempt's leftovers removed
    assert lines(out) == Counter(str(v) for v in range(N))  # every record exactly once
    for name, data in finished.items():
        bucket, part = name.split("/")
        assert FINISHED.fullmatch(part), name
        assert {int(v) % 3 for v in data.decode().split()} == {int(bucket[3:])}
        assert len(data) <= 400


def test_job_without_failure_and_at_parallelism_4(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job(tmp_path, 4, flat(out), fail_at=None)
    finished, hidden = files(out)
    assert hidden == []
    assert lines(out) == Counter(str(v) for v in range(N))
    assert {FINISHED.fullmatch(n).group(1) for n in finished} == {"0", "1", "2", "3"}  # type: ignore[union-attr]


def test_job_without_checkpointing_finishes_nothing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.from_collection(["a", "b"]).sink_to(flat(tmp_path / "out"))
    with caplog.at_level(logging.WARNING, logger="strom.connectors.filesystem"):
        env.execute("no-checkpoints")
    assert files(tmp_path / "out") == ({}, [])
    assert "is checkpointing enabled?" in caplog.text


def test_job_fails_clearly_on_an_unwritable_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.from_collection(["a"]).sink_to(flat(tmp_path / "file" / "out"))
    with pytest.raises(JobExecutionError, match="cannot write to base path"):
        env.execute("unwritable")
