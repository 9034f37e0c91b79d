"""TextSink and CsvSink against real files: writers driven directly, then whole pipelines."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.connectors.file import CsvSink, TextSink, WriteMode
from strom.formats import CsvSchema, SerializationError

pytestmark = pytest.mark.integration


@contextmanager
def writer(
    sink: Sink[Any], subtask: int = 0, parallelism: int = 1, state: list[Any] | None = None
) -> Iterator[SinkWriter[Any]]:
    w = sink.create_writer(WriterContext(subtask_index=subtask, parallelism=parallelism))
    w.open(state)
    try:
        yield w
    finally:
        w.close()


def write_all(sink: Sink[Any], batches: list[list[Any]], **kwargs: Any) -> None:
    with writer(sink, **kwargs) as w:
        for batch in batches:
            w.write(batch, None)
        w.flush(True)


def csv_rows(text: str, **kwargs: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), **kwargs))


# -- text ------------------------------------------------------------------------------------


def test_text_sink_single_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "result.txt"  # parent directories are created
    sink = TextSink(str(path))
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    write_all(sink, [["a", 1, (2, 3)], [], [None]])
    assert path.read_text() == "a\n1\n(2, 3)\nNone\n"


def test_text_sink_directory_at_parallelism_4(tmp_path: Path) -> None:
    path = tmp_path / "out"
    sink = TextSink(path)
    for i in range(4):
        write_all(sink, [[f"s{i}-{j}" for j in range(5)]], subtask=i, parallelism=4)
    assert sorted(p.name for p in path.iterdir()) == ["1", "2", "3", "4"]
    for i in range(4):
        assert (path / str(i + 1)).read_text().splitlines() == [f"s{i}-{j}" for j in range(5)]


def test_text_sink_encoding_and_to_string(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    write_all(TextSink(path, encoding="latin-1", to_string=lambda x: f"<{x}>"), [["é", 2]])
    assert path.read_bytes() == "<é>\n<2>\n".encode("latin-1")

    bad = tmp_path / "bad.txt"
    with writer(TextSink(bad, encoding="latin-1")) as w, pytest.raises(SerializationError) as e:
        w.write(["ok", "€uro"], None)
    assert str(bad) in str(e.value)
    assert "€uro" in str(e.value)
    not_str: Any = len
    overwrite = TextSink(bad, write_mode="overwrite", to_string=not_str)
    with writer(overwrite) as w, pytest.raises(SerializationError, match="int, not str"):
        w.write(["abc"], None)


# -- write modes -----------------------------------------------------------------------------


def test_no_overwrite_fails_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "exists.txt"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError, match="OVERWRITE") as info:
        write_all(TextSink(path), [["x"]])
    assert str(path) in str(info.value)
    assert path.read_text() == "precious\n"

    out = tmp_path / "dir"
    out.mkdir()
    (out / "2").write_text("precious\n")
    sink = CsvSink(out, write_mode=WriteMode.NO_OVERWRITE)
    write_all(sink, [[(1, 2)]], subtask=0, parallelism=4)  # other subtasks' files are fine
    with pytest.raises(FileExistsError) as info:
        write_all(sink, [[(3, 4)]], subtask=1, parallelism=4)
    assert str(out / "2") in str(info.value)
    assert (out / "1").read_text() == "1,2\n"
    assert (out / "2").read_text() == "precious\n"

    with pytest.raises(FileExistsError) as info:  # a file where the directory should be
        write_all(TextSink(path), [["x"]], subtask=0, parallelism=2)
    assert str(path) in str(info.value)


def test_overwrite_replaces_files_and_directories(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("old\nold\nold\n")
    write_all(TextSink(path, write_mode=WriteMode.OVERWRITE), [["new"]])
    assert path.read_text() == "new\n"

    # a file where a parallel sink needs a directory: every subtask copes, whatever the order
    sink = TextSink(path, write_mode=WriteMode.OVERWRITE)
    writers = [sink.create_writer(WriterContext(subtask_index=i, parallelism=3)) for i in range(3)]
    try:
        for i, w in enumerate(writers):
            w.open(None)
            w.write([f"from {i}"], None)
            w.flush(True)
    finally:
        for w in writers:
            w.close()
    assert {p.name: p.read_text() for p in path.iterdir()} == {
        "1": "from 0\n",
        "2": "from 1\n",
        "3": "from 2\n",
    }

    # each subtask rewrites only its own file
    write_all(sink, [["again"]], subtask=1, parallelism=3)
    assert (path / "1").read_text() == "from 0\n"
    assert (path / "2").read_text() == "again\n"

    # at parallelism 1 a directory is replaced by the file
    write_all(sink, [["single"]])
    assert path.is_file()
    assert path.read_text() == "single\n"


def test_write_mode_parse() -> None:
    assert WriteMode.parse("overwrite") is WriteMode.OVERWRITE
    assert WriteMode.parse("NO-OVERWRITE") is WriteMode.NO_OVERWRITE
    with pytest.raises(ValueError, match="unknown write mode"):
        TextSink("x", write_mode="append")


# -- flush, state, restore -------------------------------------------------------------------


def test_flush_makes_content_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with writer(TextSink(path)) as w:
        w.write(["one", "two"], None)
        assert path.read_bytes() == b""  # buffered until flushed
        w.flush(False)
        assert path.read_text() == "one\ntwo\n"
        assert w.snapshot_state(1) == [(str(path), 8)]
        w.write(["three"], None)
        w.flush(False)
        assert path.read_text() == "one\ntwo\nthree\n"
        assert w.snapshot_state(2) == [(str(path), 14)]


@pytest.mark.parametrize("share", ["own entry", "empty share"])
def test_restored_writer_appends(tmp_path: Path, share: str) -> None:
    path = tmp_path / "out.csv"
    sink = CsvSink(path)  # NO_OVERWRITE: a restore must not trip over its own output
    with writer(sink) as w:
        w.write([("a", 1), ("b", 2)], None)
        w.flush(False)
        state = w.snapshot_state(1)
        w.write([("lost?", 3)], None)  # after the checkpoint, then the job fails
        w.flush(False)
    restored = state if share == "own entry" else []
    with writer(sink, state=restored) as w:
        w.write([("lost?", 3), ("c", 4)], None)  # replayed from the checkpoint
        w.flush(True)
    # at-least-once: the record between checkpoint and failure is there twice
    assert path.read_text() == "a,1\nb,2\nlost?,3\nlost?,3\nc,4\n"


@pytest.mark.parametrize(("tail", "kept"), [("c,", "a\nb\n"), ("no newline at all", "")])
def test_restored_writer_cuts_a_torn_last_row(tmp_path: Path, tail: str, kept: str) -> None:
    path = tmp_path / "out.txt"
    # a process killed mid-write left half a row behind
    path.write_text(kept + tail)
    with writer(TextSink(path), state=[(str(path), len(kept))]) as w:
        w.write(["c", "d"], None)
        w.flush(True)
    assert path.read_text() == kept + "c\nd\n"


def test_scale_down_continues_the_directory_and_tidies_dealt_files(tmp_path: Path) -> None:
    root = tmp_path / "out"
    sink = TextSink(root)
    states = []
    for i in range(2):
        with writer(sink, subtask=i, parallelism=2) as w:
            w.write([f"w{i}-a"], None)
            w.flush(False)
            states += w.snapshot_state(1)
    (root / "2").write_text("w1-a\nw1-torn")  # subtask 1 was killed mid-row
    with writer(sink, subtask=0, parallelism=1, state=states) as w:  # 2 -> 1: both entries
        w.write(["replayed"], None)
        w.flush(True)
    assert sorted(p.name for p in root.iterdir()) == ["1", "2"]
    assert (root / "1").read_text() == "w0-a\nreplayed\n"
    assert (root / "2").read_text() == "w1-a\n"


def test_scale_up_turns_the_single_file_into_file_1_of_the_directory(tmp_path: Path) -> None:
    import threading

    root = tmp_path / "out.txt"
    sink = TextSink(root)
    with writer(sink) as w:
        w.write(["one", "two"], None)
        w.flush(False)
        state = w.snapshot_state(1)
    errors: list[BaseException] = []

    def restore(subtask: int) -> None:  # subtasks open concurrently, as in a job
        try:
            with writer(sink, subtask, 3, state[subtask::3]) as w:
                w.write([f"after-{subtask}"], None)
                w.flush(True)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=restore, args=(i,)) for i in (2, 1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert root.is_dir()
    assert (root / "1").read_text() == "one\ntwo\nafter-0\n"
    assert (root / "2").read_text() == "after-1\n"
    assert (root / "3").read_text() == "after-2\n"


# -- CSV -------------------------------------------------------------------------------------


def test_csv_quoting_round_trips_through_the_csv_module(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    rows: list[Any] = [
        (1, "plain", 2.5),
        ["with,comma", 'with "quotes"', "with\nnewline"],
        {"k": "dict", "v": None},
        ("",),
        "scalar",
        (True, "carriage\rreturn", " spaced "),
    ]
    write_all(CsvSink(path), [rows[:3], rows[3:]])
    text = path.read_bytes().decode()
    assert text.startswith('1,plain,2.5\n"with,comma","with ""quotes""","with\nnewline"\n')
    assert csv_rows(text) == [
        ["1", "plain", "2.5"],
        ["with,comma", 'with "quotes"', "with\nnewline"],
        ["dict", ""],
        [""],
        ["scalar"],
        ["True", "carriage\rreturn", " spaced "],
    ]


def test_csv_delimiters(tmp_path: Path) -> None:
    path = tmp_path / "out.psv"
    write_all(CsvSink(path, field_delimiter="|", row_delimiter="\r\n"), [[(1, "a|b", "c,d")]])
    assert path.read_bytes() == b'1|"a|b"|c,d\r\n'
    assert csv_rows(path.read_bytes().decode(), delimiter="|") == [["1", "a|b", "c,d"]]

    multi = tmp_path / "out.multi"
    write_all(CsvSink(multi, field_delimiter="::", row_delimiter=";\n"), [[(1, "x:y", "z;")]])
    assert multi.read_bytes() == b'1::"x:y"::"z;";\n'

    with pytest.raises(ValueError, match="quote"):
        CsvSink(path, field_delimiter='"')
    with pytest.raises(ValueError, match="must differ"):
        CsvSink(path, field_delimiter="\n")


def test_csv_with_schema(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    schema = CsvSchema(field_names=["name", "n"], delimiter=";", null_literal="NULL")
    write_all(CsvSink(path, schema=schema), [[{"n": 1, "name": "a;b"}, ("c", None)]])
    assert path.read_text() == '"a;b";1\nc;NULL\n'
    bad = CsvSink(tmp_path / "bad.csv", schema=schema)
    with writer(bad) as w, pytest.raises(SerializationError) as info:
        w.write([{"name": "only"}], None)
    assert str(tmp_path / "bad.csv") in str(info.value)
    with pytest.raises(ValueError, match="not both"):
        CsvSink(path, schema=schema, field_delimiter="|")


# -- pipelines -------------------------------------------------------------------------------


def _output_files(path: Path, parallelism: int) -> list[Path]:
    if parallelism == 1:
        assert path.is_file()
        return [path]
    assert sorted(p.name for p in path.iterdir()) == [str(i) for i in range(1, parallelism + 1)]
    return [path / str(i) for i in range(1, parallelism + 1)]


@pytest.mark.parametrize("parallelism", [1, 4])
def test_write_as_text_pipeline(tmp_path: Path, parallelism: int) -> None:
    from strom import StreamExecutionEnvironment

    path = tmp_path / "out"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    env.from_collection(list(range(500))).map(lambda x: f"line {x}").write_as_text(str(path))
    env.execute("write text")
    lines = [line for f in _output_files(path, parallelism) for line in f.read_text().splitlines()]
    assert Counter(lines) == Counter(f"line {x}" for x in range(500))
    if parallelism == 1:
        assert lines == [f"line {x}" for x in range(500)]


@pytest.mark.parametrize("parallelism", [1, 4])
def test_write_as_csv_pipeline(tmp_path: Path, parallelism: int) -> None:
    from strom import StreamExecutionEnvironment

    path = tmp_path / "out"
    path.write_text("stale\n")
    rows = [(x, f"name, {x}", 'say "hi"') for x in range(300)]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    env.from_collection(rows).write_as_csv(str(path), write_mode=WriteMode.OVERWRITE)
    env.execute("write csv")
    read = [
        tuple(r)
        for f in _output_files(path, parallelism)
        for r in csv_rows(f.read_bytes().decode())
    ]
    assert Counter(read) == Counter((str(x), n, q) for x, n, q in rows)
