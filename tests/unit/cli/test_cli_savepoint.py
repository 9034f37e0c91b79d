"""strom savepoint / strom stop --with-savepoint / strom run --from-savepoint, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strom.runtime.checkpoint.storage import load

STROM = str(Path(sys.executable).parent / "strom")

JOB = """
import sys, time
from strom import StreamExecutionEnvironment
from strom.functions import SourceFunction, CheckpointedFunction
from strom.state import ListStateDescriptor

LIMIT = int(sys.argv[2])

class Numbers(SourceFunction, CheckpointedFunction):
    def __init__(self):
        self.running = True
        self.next = 0
    def initialize_state(self, ctx):
        self.state = ctx.get_operator_state_store().get_list_state(ListStateDescriptor("pos"))
        self.next = (self.state.get() or [0])[0]
    def snapshot_state(self, ctx):
        self.state.update([self.next])
    def run(self, ctx):
        while self.running and self.next < LIMIT:
            with ctx.get_checkpoint_lock():
                ctx.collect(self.next)
                self.next += 1
            time.sleep(0.001)
    def cancel(self):
        self.running = False

env = StreamExecutionEnvironment.get_execution_environment()
env.enable_checkpointing(60_000)
env.get_checkpoint_config().set_checkpoint_storage_dir(sys.argv[1] + "/ckpt")
env.add_source(Numbers()).uid("numbers").key_by(lambda x: x % 2).sum().uid("sums").write_as_text(
    sys.argv[1] + "/out-" + str(LIMIT) + ".txt").uid("sink")
env.execute("savepoint-job")
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "STROM_RUNTIME_DIR": str(tmp_path / "run")}


def test_savepoint_stop_and_resume(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    env = _env(tmp_path)
    proc = subprocess.Popen(
        [STROM, "run", str(job), str(tmp_path), "1000000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = tmp_path / "run" / f"{proc.pid}.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        sp = subprocess.run(
            [STROM, "savepoint", str(proc.pid), str(tmp_path / "sp")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sp.returncode == 0, sp.stderr
        first = load(sp.stdout.strip())
        assert first.is_savepoint
        assert {"numbers", "sums"} <= set(first.operators)
        stop = subprocess.run(
            [STROM, "stop", "--with-savepoint", str(tmp_path / "sp")],  # the only job running
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stderr
        path = stop.stdout.strip()
        assert proc.wait(timeout=30) == 0  # stopped with a savepoint is a clean end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    position = load(path).operators["numbers"][0]["operator"]["list"]["pos"][0]
    assert position > 0
    # resume from the savepoint with a lower limit than already reached -> nothing new, and
    # then with a higher one: the sums continue from the savepoint's state
    limit = position + 50
    done = subprocess.run(
        [STROM, "run", "--from-savepoint", path, str(job), str(tmp_path), str(limit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / f"out-{limit}.txt").read_text().split()
    assert len(lines) == 50  # exactly the records after the savepoint position
    assert max(int(x) for x in lines) == max(sum(range(p, limit, 2)) for p in (0, 1))


def test_savepoint_without_a_running_job_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [STROM, "savepoint", "999999", str(tmp_path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert "found 0 matches" in res.stderr


def test_from_checkpoint_latest_without_checkpoints_fails_clearly(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    res = subprocess.run(
        [STROM, "run", "--from-checkpoint", "latest", str(job), str(tmp_path), "10"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "no completed checkpoint of job 'savepoint-job'" in res.stderr


@pytest.mark.parametrize("flag", ["--from-checkpoint", "--from-savepoint"])
def test_restore_flags_take_a_value(flag: str, tmp_path: Path) -> None:
    res = subprocess.run([STROM, "run", flag], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
