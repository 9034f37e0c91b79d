"""The conformance battery of ``strom.testing`` run against every built-in source and sink.

Each connector gets small fixtures (write its input in splits, read its output back) and the
battery does the rest: every check is its own test case (``conformance_tests``). Checks a
connector cannot pass are marked ``xfail(strict=True)`` with the finding, so the suite notices
when the connector is fixed; checks that do not apply are skipped by the battery itself.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strom.connectors.base import DeliveryGuarantee, Sink, Source
from strom.connectors.collection import CollectionSource
from strom.connectors.console import LoggingSink, PrintSink
from strom.connectors.file import CsvSink, FileSource, TextSink, WriteMode
from strom.connectors.socket import SocketSink, SocketTextSource
from strom.formats import SimpleStringSchema
from strom.testing import (
    CollectingServer,
    LineServer,
    SinkConformance,
    SourceConformance,
    TestingSink,
    TestingSource,
    conformance_tests,
)

try:
    from strom.connectors import filesystem
except Exception as exc:  # the rolling FileSink needs fsspec, and is under active development
    filesystem = None  # type: ignore[assignment]
    FILE_SINK_MISSING = f"FileSink not available ({type(exc).__name__}: {exc})"

pytestmark = pytest.mark.integration


def flatten(splits: list[list[str]]) -> list[str]:
    return [record for split in splits for record in split]


def fresh_dirs(tmp_path: Path) -> Callable[[], Path]:
    """A new empty directory under ``tmp_path`` on every call: one per scenario."""
    counter = itertools.count()
    return lambda: tmp_path / f"scenario-{next(counter)}"


# -- sources ----------------------------------------------------------------------------------


def write_files(new_dir: Callable[[], Path]) -> Callable[[list[list[str]]], Path]:
    """One file per split; odd-numbered files lack the final line terminator."""

    def write(splits: list[list[str]]) -> Path:
        root = new_dir()
        root.mkdir(parents=True)
        for i, lines in enumerate(splits):
            text = "\n".join(lines)
            if i % 2 == 0 and lines:
                text += "\n"  # odd splits end without a terminator: the last line still counts
            (root / f"part-{i:02d}.txt").write_text(text, encoding="utf-8")
        return root

    return write


test_collection_source = conformance_tests(
    SourceConformance,
    lambda: SourceConformance(lambda splits: CollectionSource(flatten(splits)), max_splits=1),
)

test_collection_source_parallel = conformance_tests(
    SourceConformance,
    lambda: SourceConformance(lambda s: CollectionSource(flatten(s), parallel=True)),
)


test_testing_source = conformance_tests(
    SourceConformance,
    lambda: SourceConformance(lambda splits: TestingSource(flatten(splits), batch_size=4)),
)

test_testing_source_parallel = conformance_tests(
    SourceConformance,
    lambda: SourceConformance(lambda splits: TestingSource(flatten(splits), parallel=True)),
)


def file_source_battery(tmp_path: Path) -> SourceConformance[Path]:
    return SourceConformance(
        lambda root: FileSource(root),
        write_files(fresh_dirs(tmp_path)),
        expected_guarantee="exactly_once",
    )


test_file_source = conformance_tests(SourceConformance, file_source_battery)


def file_source_one_file_battery(tmp_path: Path) -> SourceConformance[Path]:
    write = write_files(fresh_dirs(tmp_path))
    return SourceConformance(FileSource, lambda splits: write(splits) / "part-00.txt", max_splits=1)


test_file_source_one_file = conformance_tests(SourceConformance, file_source_one_file_battery)


def monitored_file_source_battery(tmp_path: Path) -> SourceConformance[Path]:
    return SourceConformance(
        lambda root: FileSource(root, monitor_interval=0.02),
        write_files(fresh_dirs(tmp_path)),
        expected_guarantee="exactly_once",
        settle=0.1,
    )


test_file_source_monitored = conformance_tests(SourceConformance, monitored_file_source_battery)


def socket_source_battery() -> SourceConformance[tuple[LineServer, list[str]]]:
    """One server per scenario: it sends the lines once the reader is connected, and ends the
    input by closing the connection."""

    def start(splits: list[list[str]]) -> tuple[LineServer, list[str]]:
        return LineServer().start(), flatten(splits)

    def send(handle: tuple[LineServer, list[str]]) -> None:
        server, lines = handle
        server.wait_for_client()
        server.send_lines(lines)

    def close(server: LineServer) -> None:
        server.close_clients()

    return SourceConformance(
        lambda handle: SocketTextSource("127.0.0.1", handle[0].port, max_retry=0),
        start,
        expected_guarantee="at_most_once",
        max_splits=1,
        after_open=send,
        end_input=lambda handle: close(handle[0]),
        cleanup=lambda handle: handle[0].stop(),
        settle=0.1,
    )


test_socket_text_source = conformance_tests(SourceConformance, socket_source_battery)


def test_socket_source_runs_only_the_checks_that_apply() -> None:
    outcomes = socket_source_battery().check_all()
    assert {c for c, outcome in outcomes.items() if outcome == "passed"} == {
        "single_split",
        "end_of_input",
        "declared_guarantee",
    }, outcomes


# -- sinks ------------------------------------------------------------------------------------


def text_lines(data: str) -> list[str]:
    """Lines of a text file; a torn last line (no terminator) is kept for the battery to see."""
    lines = data.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def sink_files(path: Path) -> list[Path]:
    """The output of a TextSink/CsvSink: the file, or the subtask files "1".."n" in order."""
    if path.is_dir():
        return sorted((p for p in path.iterdir() if p.is_file()), key=lambda p: int(p.name))
    return [path] if path.exists() else []


def read_text_sink(sink: Sink[Any]) -> list[str]:
    assert isinstance(sink, TextSink)
    files = sink_files(Path(sink.path))
    return [line for f in files for line in text_lines(f.read_text(encoding="utf-8"))]


def read_csv_sink(sink: Sink[Any]) -> list[str]:
    assert isinstance(sink, CsvSink)
    rows: list[str] = []
    for f in sink_files(Path(sink.path)):
        rows += [row[0] for row in csv.reader(io.StringIO(f.read_text(encoding="utf-8")))]
    return rows


test_testing_sink = conformance_tests(
    SinkConformance, lambda: SinkConformance(TestingSink, lambda sink: list(sink.results))
)


def text_sink_battery(tmp_path: Path) -> SinkConformance:
    new_dir = fresh_dirs(tmp_path)
    return SinkConformance(
        lambda: TextSink(new_dir() / "out"), read_text_sink, expected_guarantee="at_least_once"
    )


test_text_sink = conformance_tests(SinkConformance, text_sink_battery)


def text_sink_overwrite_battery(tmp_path: Path) -> SinkConformance:
    new_dir = fresh_dirs(tmp_path)
    return SinkConformance(
        lambda: TextSink(new_dir() / "out", write_mode=WriteMode.OVERWRITE), read_text_sink
    )


test_text_sink_overwrite = conformance_tests(SinkConformance, text_sink_overwrite_battery)


def csv_sink_battery(tmp_path: Path) -> SinkConformance:
    new_dir = fresh_dirs(tmp_path)
    return SinkConformance(
        lambda: CsvSink(new_dir() / "out.csv", write_mode=WriteMode.OVERWRITE),
        read_csv_sink,
        expected_guarantee="at_least_once",
    )


test_csv_sink = conformance_tests(SinkConformance, csv_sink_battery)

PRINT_PREFIX = re.compile(r"^(?:\d+> )?")


class CapturedStdout:
    """PrintSink output since the scenario's sink was made, via pytest's capsys."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.text = ""

    def make_sink(self) -> PrintSink:
        self.capsys.readouterr()
        self.text = ""
        return PrintSink()

    def read_back(self, sink: Sink[Any]) -> list[str]:
        self.text += self.capsys.readouterr().out
        return [PRINT_PREFIX.sub("", line, count=1) for line in text_lines(self.text)]


def print_sink_battery(capsys: pytest.CaptureFixture[str]) -> SinkConformance:
    captured = CapturedStdout(capsys)
    return SinkConformance(captured.make_sink, captured.read_back)


test_print_sink = conformance_tests(SinkConformance, print_sink_battery)

LOGGER = "strom.sink.conformance"


def logging_sink_battery(caplog: pytest.LogCaptureFixture) -> SinkConformance:
    caplog.set_level(logging.INFO, logger=LOGGER)

    def make_sink() -> LoggingSink:
        caplog.clear()
        return LoggingSink(LOGGER)

    def read_back(sink: Sink[Any]) -> list[str]:
        messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        return [m.split("> ", 1)[1] for m in messages]

    return SinkConformance(make_sink, read_back)


test_logging_sink = conformance_tests(SinkConformance, logging_sink_battery)


@pytest.fixture
def collecting_server() -> Any:
    with CollectingServer() as server:
        yield server


def socket_sink_battery(collecting_server: CollectingServer) -> SinkConformance:
    """One server for the test; each scenario's sink reads only the connections made after it
    was created (its writers' connections, one per subtask, in accept order)."""
    server = collecting_server
    first_connection: dict[int, int] = {}

    def make_sink() -> SocketSink[str]:
        sink = SocketSink(
            "127.0.0.1", server.port, SimpleStringSchema(), retry_delay=0.05, delimiter=b"\n"
        )
        first_connection[id(sink)] = len(server.per_connection())
        return sink

    def read_back(sink: Sink[Any]) -> list[str]:
        received = server.per_connection()[first_connection[id(sink)] :]
        return [line.decode() for data in received for line in data.split(b"\n")[:-1]]

    return SinkConformance(make_sink, read_back, expected_guarantee="at_least_once", settle=0.05)


test_socket_sink = conformance_tests(SinkConformance, socket_sink_battery)

PART = re.compile(r"part-(\d+)-(\d+)")


def read_file_sink(sink: Sink[Any]) -> list[str]:
    """Finished part files only (in-progress and pending ones are hidden), by subtask and
    counter, so that each subtask's records come in write order."""
    base = Path(sink.base_path)  # type: ignore[attr-defined]
    parts = []
    for path in base.rglob("part-*"):
        m = PART.fullmatch(path.name)
        if m and path.is_file():
            parts.append(((int(m[1]), int(m[2])), path))
    return [line for _, p in sorted(parts) for line in text_lines(p.read_text(encoding="utf-8"))]


def file_sink_battery(tmp_path: Path) -> SinkConformance:
    if filesystem is None:
        pytest.skip(FILE_SINK_MISSING)
    new_dir = fresh_dirs(tmp_path)
    return SinkConformance(
        lambda: filesystem.FileSink(
            str(new_dir()), bucket_assigner=filesystem.BasePathBucketAssigner()
        ),
        read_file_sink,
        expected_guarantee="exactly_once",
    )


test_file_sink = conformance_tests(SinkConformance, file_sink_battery)


def file_sink_small_parts_battery(tmp_path: Path) -> SinkConformance:
    """Default (time-based) buckets and parts of at most 40 bytes: many parts roll between
    checkpoints, so one transaction holds several."""
    if filesystem is None:
        pytest.skip(FILE_SINK_MISSING)
    new_dir = fresh_dirs(tmp_path)
    policy = filesystem.DefaultRollingPolicy(part_size_bytes=40)
    return SinkConformance(
        lambda: filesystem.FileSink(str(new_dir()), rolling_policy=policy), read_file_sink
    )


test_file_sink_small_parts = conformance_tests(SinkConformance, file_sink_small_parts_battery)


# -- the battery itself can fail --------------------------------------------------------------


class _LosingSource(Source[Any]):
    """A TestingSource whose snapshot claims one record more than was emitted."""

    supported_guarantees = TestingSource.supported_guarantees

    def __init__(self, items: list[str]) -> None:
        self.inner = TestingSource(items)
        self.max_parallelism = 1

    def create_reader(self, ctx: Any) -> Any:
        reader = self.inner.create_reader(ctx)
        snapshot = reader.snapshot_state

        def off_by_one(checkpoint_id: int) -> list[Any]:
            return [(s, p, pos + 1, inh) for s, p, pos, inh in snapshot(checkpoint_id)]

        reader.snapshot_state = off_by_one  # type: ignore[method-assign]
        return reader


def test_the_battery_catches_a_snapshot_off_by_one() -> None:
    battery = SourceConformance(lambda splits: _LosingSource(flatten(splits)))
    battery.run_check("single_split")  # no restore: nothing to see
    with pytest.raises(AssertionError, match=r"stop_and_restore.*no loss.*never emitted"):
        battery.run_check("stop_and_restore")
    with pytest.raises(AssertionError, match=r"2 of 6 conformance checks failed") as failed:
        battery.check_all()
    for check in ("stop_and_restore", "declared_guarantee"):
        assert f"conformance check '{check}'" in str(failed.value)


def test_the_battery_catches_a_sink_that_duplicates_on_restore() -> None:
    class Replaying(TestingSink[Any]):
        supported_guarantees = frozenset({DeliveryGuarantee.EXACTLY_ONCE})

    battery = SinkConformance(Replaying, lambda sink: list(sink.results))
    with pytest.raises(AssertionError, match=r"no duplicates \(exactly_once across a restore\)"):
        battery.run_check("stop_and_restore")
