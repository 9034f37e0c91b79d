"""SocketTextSource against a real LineServer on loopback.

The reader is driven directly, as the runtime drives it: ``open(None)`` and a ``poll`` loop on
its own thread (``Pump``), so that the server can be told what to do meanwhile. Timings are only
deadlines for things that must happen; they normally take milliseconds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import strom
from strom.connectors.base import DeliveryGuarantee, ReaderContext, SourceReader
from strom.connectors.socket import SocketTextSource
from strom.formats import DeserializationError
from strom.testing.network import LineServer, free_port

pytestmark = pytest.mark.integration

WAIT = 5.0
HOST = "127.0.0.1"


class Pump:
    """Polls a reader on a thread until it finishes, fails or is stopped."""

    def __init__(self, reader: SourceReader[str], max_records: int = 100) -> None:
        self.reader = reader
        self.records: list[str] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._max_records = max_records
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.reader.poll(self._max_records)
                if batch is None:
                    return
                assert isinstance(batch, list)
                assert len(batch) <= self._max_records
                if batch:
                    with self._cond:
                        self.records.extend(batch)
                        self._cond.notify_all()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[str]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self.records) >= count or self.finished.is_set(), timeout
            )
            if self.error is not None:
                raise self.error
            assert ok, f"only {len(self.records)} of {count} records within {timeout} s"
            return list(self.records)

    def wait_finished(self, timeout: float = WAIT) -> list[str]:
        assert self.finished.wait(timeout), "the reader did not finish"
        if self.error is not None:
            raise self.error
        return list(self.records)

    def stop(self) -> None:
        self._stop.set()
        self.reader.wakeup()
        self._thread.join(WAIT)


OpenReader = Callable[..., tuple[SourceReader[str], ReaderContext]]


@pytest.fixture
def open_reader() -> Iterator[OpenReader]:
    """Creates and opens readers; closes them (and stops their pumps) after the test."""
    readers: list[SourceReader[str]] = []

    def make(
        source: SocketTextSource, max_poll_wait: float = 0.05
    ) -> tuple[SourceReader[str], ReaderContext]:
        ctx = ReaderContext(subtask_index=0, parallelism=1, max_poll_wait=max_poll_wait)
        reader = source.create_reader(ctx)
        readers.append(reader)
        reader.open(None)
        return reader, ctx

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def pumps() -> Iterator[list[Pump]]:
    started: list[Pump] = []
    yield started
    for pump in started:
        pump.stop()


@pytest.fixture
def server() -> Iterator[LineServer]:
    with LineServer() as srv:
        yield srv


def poll_until_error(
    reader: SourceReader[str], got: list[str] | None = None, timeout: float = WAIT
) -> BaseException:
    """Poll until ``poll`` raises; records polled before go to ``got`` (if None, none may come)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            batch = reader.poll(10)
        except Exception as exc:
            return exc
        assert batch is not None, "the reader finished instead of failing"
        if got is None:
            assert batch == [], f"expected no records before the error, got {batch!r}"
        else:
            got.extend(batch)
    raise AssertionError(f"no error within {timeout} s")


# -- description --------------------------------------------------------------------------------


def test_declares_at_most_once_non_parallel_unbounded() -> None:
    source = SocketTextSource("localhost", 9999)
    assert source.supported_guarantees == frozenset({DeliveryGuarantee.AT_MOST_ONCE})
    assert source.delivery_guarantee is DeliveryGuarantee.AT_MOST_ONCE
    assert source.max_parallelism == 1
    assert source.bounded is False
    assert "localhost:9999" in source.describe()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": -1}, "port"),
        ({"port": True}, "port"),
        ({"host": ""}, "host"),
        ({"delimiter": ""}, "delimiter"),
        ({"max_retry": -2}, "max_retry"),
        ({"retry_delay": -1.0}, "retry_delay"),
        ({"retry_delay": float("nan")}, "retry_delay"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"encoding": "utf-16"}, "ASCII-compatible"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"host": "localhost", "port": 9999, **kwargs}
    with pytest.raises(ValueError, match=match):
        SocketTextSource(**args)  # type: ignore[arg-type]


def test_unknown_encoding_fails_at_construction() -> None:
    with pytest.raises(LookupError):
        SocketTextSource("localhost", 9999, encoding="no-such-codec")


# -- reading ------------------------------------------------------------------------------------


def test_lines_arrive_in_order(
    server: LineServer, open_reader: OpenReader, pumps: list[Pump]
) -> None:
    reader, ctx = open_reader(SocketTextSource(HOST, server.port))
    pump = Pump(reader, max_records=7)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    lines = [f"line {i} ü" for i in range(500)]
    server.send_lines(lines[:250])
    server.send_lines(lines[250:])
    assert pump.wait_for(500) == lines
    assert ctx.metrics.counter("records_in").count == 500
    assert reader.snapshot_state(1) == []


def test_poll_returns_empty_list_without_a_full_line_and_respects_max_poll_wait(
    server: LineServer,
    open_reader: OpenReader,
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port), max_poll_wait=0.1)
    server.wait_for_client(WAIT)
    server.send(b"no delimiter yet")
    for _ in range(5):
        start = time.monotonic()
        assert reader.poll(10) == []
        assert time.monotonic() - start < 1.0
    server.send(b" - now\nnext\n")
    deadline = time.monotonic() + WAIT
    got: list[str] = []
    while len(got) < 2 and time.monotonic() < deadline:
        batch = reader.poll(1)
        assert batch is not None
        assert len(batch) <= 1
        got.extend(batch)
    assert got == ["no delimiter yet - now", "next"]


def test_multi_char_delimiter_split_across_reads(
    server: LineServer, open_reader: OpenReader, pumps: list[Pump]
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port, delimiter="||"))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send(b"one|")
    time.sleep(0.2)  # let the reader see half a delimiter on its own
    assert pump.records == []
    server.send(b"|two|still two||thr")
    server.send(b"ee||")
    assert pump.wait_for(3) == ["one", "two|still two", "three"]


def test_crlf_lines_with_newline_delimiter(
    server: LineServer, open_reader: OpenReader, pumps: list[Pump]
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send_lines(["a", "b"], delimiter="\r\n")
    server.send(b"x\ry\n\n")  # a lone CR inside a line stays; an empty line is a line
    assert pump.wait_for(4) == ["a", "b", "x\ry", ""]


def test_explicit_crlf_delimiter(
    server: LineServer, open_reader: OpenReader, pumps: list[Pump]
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port, delimiter="\r\n"))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send(b"a\nb\r\nc\r\n")
    assert pump.wait_for(2) == ["a\nb", "c"]


def test_partial_last_line_is_emitted_when_the_server_closes(
    server: LineServer,
    open_reader: OpenReader,
    pumps: list[Pump],
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send(b"a\nb\npartial")
    pump.wait_for(2)
    server.close_clients()
    assert pump.wait_finished() == ["a", "b", "partial"]
    assert reader.poll(10) is None


def test_max_retry_zero_ends_when_the_server_closes(
    server: LineServer,
    open_reader: OpenReader,
    pumps: list[Pump],
) -> None:
    reader, ctx = open_reader(SocketTextSource(HOST, server.port, max_retry=0, retry_delay=0.01))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send_lines(["only"])
    pump.wait_for(1)
    server.close_clients()
    assert pump.wait_finished() == ["only"]
    time.sleep(0.1)
    assert server.connections_total == 1
    assert ctx.metrics.counter("reconnects").count == 0


def test_reconnects_after_the_server_drops_the_client(
    server: LineServer,
    open_reader: OpenReader,
    pumps: list[Pump],
) -> None:
    reader, ctx = open_reader(SocketTextSource(HOST, server.port, max_retry=2, retry_delay=0.05))
    pump = Pump(reader)
    pumps.append(pump)
    server.wait_for_client(WAIT)
    server.send_lines(["a", "b"])
    pump.wait_for(2)
    server.close_clients()

    server.wait_for_client(WAIT)  # the second connection
    server.send_lines(["c", "d"])
    assert pump.wait_for(4) == ["a", "b", "c", "d"]
    assert ctx.metrics.counter("reconnects").count == 1

    server.close_clients()
    server.wait_for_client(WAIT)  # the third connection: the second and last retry
    server.send_lines(["e"])
    pump.wait_for(5)
    server.close_clients()
    assert pump.wait_finished() == ["a", "b", "c", "d", "e"]
    assert server.connections_total == 3
    assert ctx.metrics.counter("reconnects").count == 2


def test_retries_until_a_server_comes_up(open_reader: OpenReader, pumps: list[Pump]) -> None:
    port = free_port()
    reader, ctx = open_reader(SocketTextSource(HOST, port, max_retry=-1, retry_delay=0.02))
    pump = Pump(reader)
    pumps.append(pump)
    time.sleep(0.2)  # several refused attempts
    assert not pump.finished.is_set()
    with LineServer(HOST, port) as late:
        late.wait_for_client(WAIT)
        late.send_lines(["finally"])
        assert pump.wait_for(1) == ["finally"]
    assert ctx.metrics.counter("reconnects").count >= 1


def test_decode_error_names_endpoint_and_byte_offset(
    server: LineServer, open_reader: OpenReader
) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port))
    server.wait_for_client(WAIT)
    server.send(b"ok\nbad \xff\n")
    got: list[str] = []
    error = poll_until_error(reader, got)
    assert isinstance(error, DeserializationError)
    assert got == ["ok"]  # the good line before the bad one is not lost
    message = str(error)
    assert f"{HOST}:{server.port}" in message
    assert "byte offset 3" in message
    assert "utf-8" in message


# -- failing to connect -------------------------------------------------------------------------


def test_unknown_host_fails_with_a_clear_error(open_reader: OpenReader) -> None:
    reader, _ = open_reader(SocketTextSource("no-such-host.invalid", 9999))
    error = poll_until_error(reader)
    assert isinstance(error, ConnectionError)
    assert "no-such-host.invalid" in str(error)
    assert isinstance(error.__cause__, OSError)


def test_refused_port_fails_with_a_clear_error(open_reader: OpenReader) -> None:
    port = free_port()
    reader, _ = open_reader(SocketTextSource(HOST, port))
    error = poll_until_error(reader)
    assert isinstance(error, ConnectionError)
    assert f"{HOST}:{port}" in str(error)
    assert "1 attempt" in str(error)


def test_refused_port_is_retried_before_failing(open_reader: OpenReader) -> None:
    port = free_port()
    reader, ctx = open_reader(SocketTextSource(HOST, port, max_retry=2, retry_delay=0.02))
    error = poll_until_error(reader)
    assert isinstance(error, ConnectionError)
    assert f"{HOST}:{port} after 3 attempts" in str(error)
    assert ctx.metrics.counter("reconnects").count == 2


# -- stopping -----------------------------------------------------------------------------------


def test_wakeup_interrupts_a_blocked_poll(server: LineServer, open_reader: OpenReader) -> None:
    reader, _ = open_reader(SocketTextSource(HOST, server.port), max_poll_wait=5.0)
    server.wait_for_client(WAIT)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(reader.poll(10)), daemon=True)
    start = time.monotonic()
    thread.start()
    time.sleep(0.1)
    reader.wakeup()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert time.monotonic() - start < 2.0
    assert result == [[]]
    server.send_lines(["still reading"])  # a wakeup does not end the reader
    deadline = time.monotonic() + WAIT
    got: list[str] = []
    while not got and time.monotonic() < deadline:
        batch = reader.poll(10)
        assert batch is not None
        got.extend(batch)
    assert got == ["still reading"]


def test_close_stops_a_blocked_reader(server: LineServer) -> None:
    source = SocketTextSource(HOST, server.port)
    reader = source.create_reader(ReaderContext(subtask_index=0, parallelism=1, max_poll_wait=5.0))
    reader.open(None)
    server.wait_for_client(WAIT)
    pump = Pump(reader)
    time.sleep(0.1)
    start = time.monotonic()
    reader.close()
    assert pump.finished.wait(2.0)
    assert time.monotonic() - start < 2.0
    assert pump.error is None
    assert reader.poll(10) is None
    reader.close()  # idempotent
    deadline = time.monotonic() + WAIT
    while server.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.active_connections == 0  # the client socket was closed


def test_close_stops_a_reader_waiting_to_reconnect(open_reader: OpenReader) -> None:
    reader, _ = open_reader(
        SocketTextSource(HOST, free_port(), max_retry=-1, retry_delay=60.0), max_poll_wait=5.0
    )
    pump = Pump(reader)
    time.sleep(0.1)
    start = time.monotonic()
    reader.close()
    assert pump.finished.wait(2.0)
    assert time.monotonic() - start < 2.0


# -- pipelines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 4])
def test_socket_text_stream_pipeline(server: LineServer, parallelism: int) -> None:
    env = strom.StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    stream = env.socket_text_stream(HOST, server.port).map(str.upper)
    result = stream.execute_and_collect()
    assert not isinstance(result, list)
    with result as records:
        server.wait_for_client(WAIT)
        lines = [f"line-{i}" for i in range(200)]
        server.send_lines(lines)
        server.close_clients()  # max_retry=0: the stream ends and so does the job
        got = list(records)
    expected = [line.upper() for line in lines]
    assert got == expected if parallelism == 1 else sorted(got) == sorted(expected)


def test_pipeline_fails_clearly_when_nothing_listens() -> None:
    port = free_port()
    env = strom.StreamExecutionEnvironment.get_execution_environment()
    result = env.socket_text_stream(HOST, port).execute_and_collect()
    assert not isinstance(result, list)
    with result as records, pytest.raises(strom.JobExecutionError, match=f"{HOST}:{port}"):
        list(records)


def test_free_port_really_refuses() -> None:
    # Guards the refused-port tests: they would pass vacuously against a listening port.
    port = free_port()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((HOST, port), 1):
        pass
