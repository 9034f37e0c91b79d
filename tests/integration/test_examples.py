"""Every script in ``examples/`` runs standalone (``python examples/X.py``) and under
``strom run --parallelism 2``, and prints what its docstring promises."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
STROM = Path(sys.executable).with_name("strom")
TIMEOUT = 60  # a deadline for a hung example, never a performance expectation

# (how to run it, the parallelism it then runs at)
MODES = [
    pytest.param(lambda path: [sys.executable, str(path)], 1, id="python"),
    pytest.param(lambda path: [sys.executable, str(path), "3"], 3, id="python-arg"),
    pytest.param(lambda path: [str(STROM), "run", str(path), "-p", "2"], 2, id="strom-run"),
]


Command = Callable[[Path], list[str]]


def run_example(name: str, command: Command) -> str:
    r = subprocess.run(
        command(EXAMPLES / name),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_example_has_a_docstring_and_a_test() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["buffering_sink.py", "parallel_counting_source.py", "word_count.py"]
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""'), f"{name} needs a docstring saying what it shows"


@pytest.mark.parametrize(("command", "parallelism"), MODES)
def test_parallel_counting_source(command: Command, parallelism: int) -> None:
    out = run_example("parallel_counting_source.py", command)
    per_subtask = {
        int(k): int(n) for k, n in re.findall(r"^subtask (\d+) emitted (\d+) numbers$", out, re.M)
    }
    assert sorted(per_subtask) == list(range(parallelism))
    assert sum(per_subtask.values()) == 1000
    assert max(per_subtask.values()) - min(per_subtask.values()) <= 1  # the range is split
    assert f"total of 0..999 = 499500 (1000 numbers, parallelism {parallelism})" in out


@pytest.mark.parametrize(("command", "parallelism"), MODES)
def test_buffering_sink(command: Command, parallelism: int) -> None:
    out = run_example("buffering_sink.py", command)
    flushes: dict[int, list[list[str]]] = {}
    for subtask, size, items in re.findall(r"^subtask (\d+) flushed (\d+): \[(.*)\]$", out, re.M):
        batch = re.findall(r"'([A-Z]+)'", items)
        assert len(batch) == int(size)
        flushes.setdefault(int(subtask), []).append(batch)
    assert set(flushes) <= set(range(parallelism))
    for batches in flushes.values():
        assert all(len(b) == 3 for b in batches[:-1]), "full buffers are flushed at 3"
        assert 1 <= len(batches[-1]) <= 3, "the rest is flushed when the input ends"
    written = [item for batches in flushes.values() for b in batches for item in b]
    fruit = ["apple", "banana", "cherry", "damson", "elderberry", "fig", "grape", "huckleberry"]
    assert sorted(written) == [f.upper() for f in fruit]  # every element exactly once


@pytest.mark.parametrize(("command", "parallelism"), MODES)
def test_word_count(command: Command, parallelism: int) -> None:
    out = run_example("word_count.py", command)
    final: dict[str, int] = {}
    updates = 0
    prefixes = set()
    for line in out.splitlines():
        m = re.fullmatch(r"(?:(\d+)> )?\('([a-z]+)', (\d+)\)", line)
        assert m, f"unexpected output line {line!r}"
        prefixes.add(m[1])
        word, count = m[2], int(m[3])
        assert count == final.get(word, 0) + 1, "a rolling count goes up by one per word"
        final[word] = count
        updates += 1
    # 30 distinct words spread over every subtask (key groups come from a stable hash)
    expected = {None} if parallelism == 1 else {str(p) for p in range(1, parallelism + 1)}
    assert prefixes == expected
    # Hamlet, 3.1: five lines, 43 words
    assert updates == sum(final.values()) == 43
    assert Counter(final).most_common(1) == [("to", 6)]
    assert {w: final[w] for w in ("be", "the", "or", "of", "and", "tis")} == {
        "be": 2,
        "the": 3,
        "or": 2,
        "of": 2,
        "and": 2,
        "tis": 1,
    }
