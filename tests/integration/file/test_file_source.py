"""FileSource against real files: readers driven directly, then whole pipelines.

Readers are driven the way the runtime does: ``create_reader`` → ``open(state)`` → ``poll``
until ``None`` (bounded) or until a deadline (monitoring mode), ``snapshot_state`` between polls.
"""

from __future__ import annotations

import os
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.connectors.base import DeliveryGuarantee, ReaderContext, SourceReader
from strom.connectors.file import FileSource, enumerate_files
from strom.metrics import MetricGroup

pytestmark = pytest.mark.integration

WAIT = 5.0  # deadline for things that must happen in monitoring mode; normally milliseconds


def make_reader(
    src: FileSource,
    subtask: int = 0,
    parallelism: int = 1,
    state: list[Any] | None = None,
    metrics: MetricGroup | None = None,
) -> SourceReader[str]:
    ctx = ReaderContext(
        subtask_index=subtask,
        parallelism=parallelism,
        max_poll_wait=0.01,
        metrics=metrics or MetricGroup(),
    )
    reader = src.create_reader(ctx)
    reader.open(state)
    return reader


def drain(reader: SourceReader[str], max_records: int = 1000) -> list[str]:
    out: list[str] = []
    while (batch := reader.poll(max_records)) is not None:
        assert isinstance(batch, list)
        assert len(batch) <= max_records
        out.extend(batch)
    return out


def read_all(src: FileSource, parallelism: int = 1) -> list[list[str]]:
    outputs = []
    for i in range(parallelism):
        reader = make_reader(src, i, parallelism)
        try:
            outputs.append(drain(reader))
        finally:
            reader.close()
    return outputs


def take(reader: SourceReader[str], n: int, chunk: int = 7) -> list[str]:
    """Exactly ``n`` lines (fewer only at the end), polled ``chunk`` at a time."""
    out: list[str] = []
    while len(out) < n:
        batch = reader.poll(min(chunk, n - len(out)))
        if batch is None:
            break
        assert isinstance(batch, list)
        out.extend(batch)
    return out


def poll_until(reader: SourceReader[str], predicate: Any, timeout: float = WAIT) -> list[str]:
    """Poll a monitoring reader until ``predicate(lines so far)`` holds."""
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while not predicate(out):
        assert time.monotonic() < deadline, f"timed out; got {out!r}"
        batch = reader.poll(100)
        assert batch is not None, "a monitoring reader must never finish"
        assert isinstance(batch, list)
        out.extend(batch)
    return out


def poll_for(reader: SourceReader[str], seconds: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = reader.poll(100)
        assert batch is not None, "a monitoring reader must never finish"
        assert isinstance(batch, list)
        out.extend(batch)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A directory of 12 files in sub-directories plus hidden files; returns (root, lines in
    read order)."""
    root = tmp_path / "in"
    expected: list[str] = []
    for d in ("a", "b/c", "d"):
        (root / d).mkdir(parents=True)
    names = [f"{d}/part-{k}.txt" for d in ("a", "b/c", "d") for k in range(4)]
    for name in sorted(names):
        lines = [f"{name}:{j}" for j in range(25)]
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        expected.extend(lines)
    (root / ".hidden").write_text("hidden\n")
    (root / "_SUCCESS").write_text("marker\n")
    (root / "_tmp").mkdir()
    (root / "_tmp" / "x.txt").write_text("in progress\n")
    (root / "a" / ".part-9.txt.crc").write_text("crc\n")
    return root, expected


# -- reading ---------------------------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("alpha\nbeta\n\ngamma delta\n", encoding="utf-8")
    src = FileSource(str(path))
    assert src.bounded
    assert src.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE
    assert read_all(src) == [["alpha", "beta", "", "gamma delta"]]


def test_empty_file_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    assert read_all(FileSource(tmp_path / "empty.txt")) == [[]]
    (tmp_path / "dir").mkdir()
    assert read_all(FileSource(tmp_path / "dir"), parallelism=2) == [[], []]


def test_directory_at_parallelism_1_reads_in_path_order(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    (out,) = read_all(FileSource(str(root)))
    assert out == expected


def test_directory_at_parallelism_4_reads_each_line_exactly_once(
    tree: tuple[Path, list[str]],
) -> None:
    root, expected = tree
    outputs = read_all(FileSource(root), parallelism=4)
    assert Counter(line for out in outputs for line in out) == Counter(expected)
    assert sum(1 for out in outputs if out) >= 2, "the files should spread over subtasks"
    for i, out in enumerate(outputs):
        files = {line.split(":")[0] for line in out}
        assert all(zlib.crc32(f.encode()) % 4 == i for f in files)


def test_poll_returns_at_most_max_records(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    reader = make_reader(FileSource(root))
    try:
        assert drain(reader, max_records=3) == expected
        assert reader.poll(3) is None  # stays finished
    finally:
        reader.close()


def test_crlf_and_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "dos.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nthree\r\r\nlast\r")
    assert read_all(FileSource(path)) == [["one", "two", "", "three\r", "last"]]
    path.write_bytes(b"a\nb\nno newline")
    assert read_all(FileSource(path)) == [["a", "b", "no newline"]]


def test_lines_longer_than_the_read_buffer(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    lines = ["x" * 2_500_000, *(f"{i}" * (i % 50) for i in range(40_000)), "y" * 1_100_000]
    path.write_text("\n".join(lines), encoding="utf-8")  # the last one unterminated
    assert read_all(FileSource(path)) == [lines]


def test_non_ascii_and_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("café\nnaïve\n".encode("latin-1"))
    assert read_all(FileSource(path, encoding="latin-1")) == [["café", "naïve"]]
    path.write_text("日本語\nüber\n", encoding="utf-8")
    assert read_all(FileSource(path)) == [["日本語", "über"]]
    with pytest.raises(ValueError, match="utf-16"):
        FileSource(path, encoding="utf-16")
    with pytest.raises(LookupError):
        FileSource(path, encoding="no-such-codec")


def test_file_filter_and_enumerate_files(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    files = enumerate_files(root)
    assert [os.path.relpath(f, root).replace(os.sep, "/") for f in files] == sorted(
        f"{d}/part-{k}.txt" for d in ("a", "b/c", "d") for k in range(4)
    )

    def keep(path: str) -> bool:
        return path.endswith("part-1.txt")

    kept = enumerate_files(str(root), keep)
    assert len(kept) == 3
    (out,) = read_all(FileSource(root, file_filter=keep))
    assert out == [line for line in expected if line.split(":")[0].endswith("part-1.txt")]


def test_metrics(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    metrics = MetricGroup()
    reader = make_reader(FileSource(root), metrics=metrics)
    try:
        drain(reader)
    finally:
        reader.close()
    assert metrics.counter("records_in").get_count() == len(expected)
    assert metrics.counter("files_read").get_count() == 12


# -- checkpoints and restore -----------------------------------------------------------------


def test_restore_continues_exactly_after_the_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    expected = []
    for k in range(3):
        lines = [f"f{k}-{j}" for j in range(10)]
        expected.extend(lines)
        end = "\r\n" if k == 1 else "\n"
        text = end.join(lines) + ("" if k == 2 else end)  # the last file's last line unterminated
        (root / f"f{k}.txt").write_bytes(text.encode())
    src = FileSource(root)
    for k in range(len(expected) + 1):
        first = make_reader(src)
        try:
            head = take(first, k, chunk=4)
            state = first.snapshot_state(1)
        finally:
            first.close()
        second = make_reader(src, state=state)
        try:
            assert head + drain(second) == expected, f"snapshot after {k} lines"
        finally:
            second.close()


def test_state_entries_are_path_offset_done(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"12\n345\n")
    (tmp_path / "b.txt").write_bytes(b"6\n78\n")
    (tmp_path / "c.txt").write_bytes(b"9\n")
    reader = make_reader(FileSource(tmp_path))
    try:
        assert reader.snapshot_state(0) == []
        assert take(reader, 3, chunk=3) == ["12", "345", "6"]
        assert sorted(reader.snapshot_state(1)) == [("a.txt", 7, True), ("b.txt", 2, False)]
    finally:
        reader.close()


def test_restore_1_to_3_subtasks(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    src = FileSource(root)
    first = make_reader(src)
    try:
        head = take(first, 137)
        state = first.snapshot_state(5)
    finally:
        first.close()
    rest = []
    for i in range(3):
        reader = make_reader(src, i, 3, state=list(state))
        try:
            rest.extend(drain(reader))
        finally:
            reader.close()
    assert len(head) == 137
    assert Counter(head + rest) == Counter(expected)


def test_restore_4_to_2_subtasks(tree: tuple[Path, list[str]]) -> None:
    root, expected = tree
    src = FileSource(root)
    head: list[str] = []
    union: list[Any] = []
    for i in range(4):
        reader = make_reader(src, i, 4)
        try:
            head.extend(take(reader, 30 + i))
            union.extend(reader.snapshot_state(2))
        finally:
            reader.close()
    rest = []
    for i in range(2):
        reader = make_reader(src, i, 2, state=list(union))
        try:
            rest.extend(drain(reader))
        finally:
            reader.close()
    assert Counter(head + rest) == Counter(expected)


def test_restore_fails_when_a_started_file_shrank_or_vanished(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\nthree\n")
    src = FileSource(tmp_path)
    reader = make_reader(src)
    try:
        take(reader, 2)
        state = reader.snapshot_state(1)
    finally:
        reader.close()
    path.write_text("x\n")
    reader = make_reader(src, state=state)
    try:
        with pytest.raises(ValueError, match=r"a\.txt.*truncated"):
            reader.poll(10)
    finally:
        reader.close()
    path.unlink()
    (tmp_path / "other.txt").write_text("keeps the directory readable\n")
    with pytest.raises(FileNotFoundError, match=r"a\.txt"):
        make_reader(src, state=state)


# -- monitoring ------------------------------------------------------------------------------


def test_monitoring_picks_up_new_files_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a1\na2\n")
    metrics = MetricGroup()
    src = FileSource(tmp_path, monitor_interval=0.05)
    assert not src.bounded
    reader = make_reader(src, metrics=metrics)
    try:
        assert poll_until(reader, lambda out: len(out) >= 2) == ["a1", "a2"]
        # written elsewhere, then moved in: the way to hand a complete file to a monitor
        (tmp_path / "_b.tmp").write_text("b1\nb2\nb3\n")
        os.replace(tmp_path / "_b.tmp", tmp_path / "b.txt")
        assert poll_until(reader, lambda out: len(out) >= 3) == ["b1", "b2", "b3"]
        poll_until(reader, lambda _: metrics.counter("files_read").get_count() == 2)
        assert poll_for(reader, 0.2) == []  # nothing is read twice
    finally:
        reader.close()


def test_monitoring_emits_only_complete_lines_while_a_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "growing.txt"
    path.write_bytes(b"x\ny")
    reader = make_reader(FileSource(tmp_path, monitor_interval=2.0))
    try:
        assert poll_until(reader, lambda out: len(out) >= 1) == ["x"]
        assert poll_for(reader, 0.1) == []  # "y" is not terminated yet
        with path.open("ab") as f:
            f.write(b"z\nw")
        assert poll_until(reader, lambda out: len(out) >= 1) == ["yz"]
    finally:
        reader.close()
    # once the file stops growing for an interval, the unterminated tail is emitted too
    reader = make_reader(FileSource(tmp_path, monitor_interval=0.05))
    try:
        assert poll_until(reader, lambda out: len(out) >= 3) == ["x", "yz", "w"]
    finally:
        reader.close()


def test_restore_in_monitoring_mode_does_not_reread_finished_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a1\na2\n")
    (tmp_path / "b.txt").write_text("b1\n")
    metrics = MetricGroup()
    src = FileSource(tmp_path, monitor_interval=0.05)
    reader = make_reader(src, metrics=metrics)
    try:
        poll_until(reader, lambda _: metrics.counter("files_read").get_count() == 2)
        state = reader.snapshot_state(3)
    finally:
        reader.close()
    assert sorted(state) == [("a.txt", 6, True), ("b.txt", 3, True)]
    for parallelism in (1, 2):
        readers = [make_reader(src, i, parallelism, list(state)) for i in range(parallelism)]
        try:
            assert [poll_for(r, 0.15) for r in readers] == [[]] * parallelism
            (tmp_path / f"c{parallelism}.txt").write_text("c1\nc2\n")
            outputs: list[str] = []
            deadline = time.monotonic() + WAIT
            while len(outputs) < 2:
                assert time.monotonic() < deadline, outputs
                for r in readers:
                    batch = r.poll(100)
                    assert isinstance(batch, list)
                    outputs.extend(batch)
            assert outputs == ["c1", "c2"]
        finally:
            for r in readers:
                r.close()
        (tmp_path / f"c{parallelism}.txt").unlink()  # the state predates it


# -- errors ----------------------------------------------------------------------------------


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "data.txt"
    with pytest.raises(FileNotFoundError, match="nope") as info:
        make_reader(FileSource(missing))
    assert str(missing) in str(info.value)


def test_unreadable_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden\n")
    secret.chmod(0)
    if os.access(secret, os.R_OK):  # root reads anything: simulate the permission check
        real_access = os.access

        def access(path: Any, mode: int, **kwargs: Any) -> bool:
            return os.fspath(path) != str(secret) and real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    try:
        with pytest.raises(PermissionError) as info:
            make_reader(FileSource(secret))
        assert str(secret) in str(info.value)
        with pytest.raises(PermissionError) as info:
            make_reader(FileSource(tmp_path))  # found while listing the directory
        assert str(secret) in str(info.value)
    finally:
        secret.chmod(0o644)


def test_invalid_encoding_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nal\xffso fine\nnever\n")
    reader = make_reader(FileSource(path))
    try:
        with pytest.raises(ValueError, match="invalid utf-8") as info:
            drain(reader)
    finally:
        reader.close()
    message = str(info.value)
    assert str(path) in message
    assert "line=2" in message
    assert "byte_offset=5" in message


# -- pipelines -------------------------------------------------------------------------------


def _collect(env: Any, stream: Any) -> list[str]:
    it: Iterator[str]
    with stream.execute_and_collect() as it:
        return list(it)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_read_text_file_pipeline(tree: tuple[Path, list[str]], parallelism: int) -> None:
    from strom import StreamExecutionEnvironment

    root, expected = tree
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    out = _collect(env, env.read_text_file(str(root)))
    assert Counter(out) == Counter(expected)
    if parallelism == 1:
        assert out == expected
