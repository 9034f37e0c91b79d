"""Chaos: whole jobs crash (injected exception, or kill -9 of the process) and recover.

After recovery the keyed counts must be exact (exactly-once state), every intermediate count
must be in the text sink at least once (at-least-once output), and — when the rolling file
sink is available — every count exactly once in its finished part files (exactly-once
output). STROM_SOAK_SEEDS=N runs the soak variant with N seeds (default 4).
"""

from __future__ import annotations

import ast
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "jobs"))
from keyed_count import WORDS

pytestmark = pytest.mark.e2e

JOB = Path(__file__).parent / "jobs" / "keyed_count.py"
STROM = Path(sys.executable).parent / "strom"
EXPECTED = Counter(WORDS)


def _has_file_sink() -> bool:
    try:
        from strom.connectors.filesystem import FileSink  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(tmp_path: Path, source: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if source == "file":
        (tmp_path / "input").mkdir()
        for i in range(4):
            (tmp_path / "input" / f"part-{i}.txt").write_text("\n".join(WORDS[i::4]) + "\n")
    return tmp_path


def _cmd(source: str, workdir: Path, *extra: str, restore: bool = False) -> list[str]:
    cmd = [str(STROM), "run", "-p", "2"]
    if restore:
        cmd += ["--from-checkpoint", "latest"]
    cmd += [str(JOB), "--", source, str(workdir), *extra]
    if _has_file_sink():
        cmd.append("--file-sink")
    return cmd


def _verify(workdir: Path) -> None:
    out = workdir / "counts.txt"  # a directory of files 1..n at parallelism > 1
    files = sorted(out.iterdir()) if out.is_dir() else [out]
    results = [ast.literal_eval(line) for f in files for line in f.read_text().splitlines()]
    final: dict[str, int] = {}
    for word, count in results:
        final[word] = max(final.get(word, 0), count)
    assert final == dict(EXPECTED), "keyed state must be exactly-once"
    seen: dict[str, set[int]] = {}
    for word, count in results:
        seen.setdefault(word, set()).add(count)
    for word, n in EXPECTED.items():
        assert seen[word] == set(range(1, n + 1)), f"text sink lost counts of {word}"
    if _has_file_sink():
        parts = workdir / "parts"
        rows: list[str] = []
        for f in sorted(parts.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                rows.extend(f.read_text().splitlines())
        expected_rows = [f"{w},{c}" for w, n in EXPECTED.items() for c in range(1, n + 1)]
        assert Counter(rows) == Counter(expected_rows), "file sink must hold each row exactly once"


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=JOB.parent)


@pytest.mark.parametrize("source", ["collection", "file", "function"])
@pytest.mark.parametrize("seed", [11, 12])
def test_injected_exception_then_recovery(tmp_path: Path, source: str, seed: int) -> None:
    workdir = _prepare(tmp_path, source)
    fail_at = random.Random(seed).randrange(300, 3000)
    done = _run(_cmd(source, workdir, "--fail-at", str(fail_at)))
    assert done.returncode == 0, done.stderr
    assert "restarting" in done.stderr  # the failure happened and was recovered from
    _verify(workdir)


def _kill_and_resume(tmp_path: Path, source: str, seed: int) -> None:
    workdir = _prepare(tmp_path, source)
    rnd = random.Random(seed)
    proc = subprocess.Popen(
        _cmd(source, workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=JOB.parent
    )
    ckpt = workdir / "ckpt"
    deadline = time.monotonic() + 30
    # wait until at least one checkpoint is complete, then kill at a random moment
    while not list(ckpt.glob("*/*/chk-*/_metadata")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    time.sleep(rnd.uniform(0.0, 0.6))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    if proc.returncode == 0:
        pytest.fail("the job finished before it could be killed: make it slower")
    assert proc.returncode == -signal.SIGKILL
    done = _run(_cmd(source, workdir, restore=True))
    assert done.returncode == 0, done.stderr
    _verify(workdir)


@pytest.mark.parametrize("source", ["collection", "file", "function"])
@pytest.mark.parametrize("seed", [21, 22])
def test_kill_9_then_restart_from_latest_checkpoint(tmp_path: Path, source: str, seed: int) -> None:
    _kill_and_resume(tmp_path, source, seed)


@pytest.mark.slow
def test_soak_kill_9_many_seeds(tmp_path: Path) -> None:
    seeds = int(os.environ.get("STROM_SOAK_SEEDS", "4"))
    for seed in range(100, 100 + seeds):
        for source in ("collection", "file", "function"):
            _kill_and_resume(tmp_path / f"{source}-{seed}", source, seed)
