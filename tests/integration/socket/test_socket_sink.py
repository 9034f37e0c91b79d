"""SocketSink against a real CollectingServer (and a FaultProxy) on loopback.

The writer is driven directly, as the runtime drives it: ``open(None)``, ``write`` batches,
``flush`` (a checkpoint or the end of input), ``close``. Timings are only deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import strom
from strom.connectors.base import DeliveryGuarantee, SinkWriter, WriterContext
from strom.connectors.socket import SocketSink
from strom.errors import ConnectorError
from strom.formats import SerializationError, SimpleStringSchema
from strom.testing.network import CollectingServer, FaultProxy, free_port

pytestmark = pytest.mark.integration

WAIT = 5.0
HOST = "127.0.0.1"

OpenWriter = Callable[..., tuple[SinkWriter[Any], WriterContext]]


@pytest.fixture
def server() -> Iterator[CollectingServer]:
    with CollectingServer() as srv:
        yield srv


@pytest.fixture
def open_writer() -> Iterator[OpenWriter]:
    """Creates and opens writers; closes them after the test."""
    writers: list[SinkWriter[Any]] = []

    def make(sink: SocketSink[Any]) -> tuple[SinkWriter[Any], WriterContext]:
        ctx = WriterContext(subtask_index=0, parallelism=1)
        writer = sink.create_writer(ctx)
        writers.append(writer)
        writer.open(None)
        return writer, ctx

    yield make
    for writer in writers:
        writer.close()


def line_sink(port: int, **kwargs: Any) -> SocketSink[str]:
    return SocketSink(HOST, port, SimpleStringSchema(), delimiter=b"\n", **kwargs)


def assert_at_least_once_in_order(received: list[bytes], expected: list[str]) -> None:
    """Every expected record arrived at least once, first occurrences in the original order."""
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(received):
        first_seen.setdefault(raw.decode(), i)
    missing = [r for r in expected if r not in first_seen]
    assert not missing, f"{len(missing)} records lost, e.g. {missing[:5]}"
    unexpected = set(first_seen) - set(expected)
    assert not unexpected, f"records nobody wrote: {sorted(unexpected)[:5]}"
    order = sorted(expected, key=first_seen.__getitem__)
    assert order == expected, "first occurrences are out of order"


# -- description --------------------------------------------------------------------------------


def test_declares_at_least_once() -> None:
    sink = line_sink(9999)
    assert sink.supported_guarantees == frozenset({DeliveryGuarantee.AT_LEAST_ONCE})
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    assert f"{HOST}:9999" in sink.describe()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": 0}, ValueError, "port"),
        ({"port": 70000}, ValueError, "port"),
        ({"host": ""}, ValueError, "host"),
        ({"max_retries": -2}, ValueError, "max_retries"),
        ({"retry_delay": -0.1}, ValueError, "retry_delay"),
        ({"delimiter": b""}, ValueError, "delimiter"),
        ({"delimiter": "\n"}, TypeError, "bytes"),
        ({"serialization_schema": object()}, TypeError, "serialize"),
    ],
)
def test_constructor_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {
        "host": HOST,
        "port": 9999,
        "serialization_schema": SimpleStringSchema(),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        SocketSink(**args)


# -- writing ------------------------------------------------------------------------------------


def test_records_arrive_serialized_and_delimited(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    writer, ctx = open_writer(line_sink(server.port))
    writer.write(["alpha", "beta"], None)
    writer.write([], None)
    writer.write(["gämma"], None)
    time.sleep(0.1)
    assert server.data == b"", "records are buffered until a flush"
    writer.flush(False)
    server.wait_for(lambda: len(server.lines()) >= 3, WAIT)
    assert server.data == "alpha\nbeta\ngämma\n".encode()
    assert server.connections_total == 1
    assert ctx.metrics.counter("bytes_out").count == len(server.data)


def test_without_delimiter_records_are_concatenated(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    writer, _ = open_writer(SocketSink(HOST, server.port, SimpleStringSchema()))
    writer.write(["ab", "cd"], None)
    writer.flush(True)
    server.wait_for(lambda: server.data == b"abcd", WAIT)


def test_auto_flush_sends_every_batch(server: CollectingServer, open_writer: OpenWriter) -> None:
    writer, _ = open_writer(line_sink(server.port, auto_flush=True))
    writer.write(["now"], None)
    server.wait_for(lambda: server.lines() == [b"now"], WAIT)


def test_large_writes_are_sent_before_a_flush(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    writer, _ = open_writer(line_sink(server.port))
    records = [f"{i:08d}" for i in range(20_000)]  # well over the send threshold
    writer.write(records, None)
    server.wait_for(lambda: len(server.data) > 0, WAIT)
    writer.flush(True)
    server.wait_for(lambda: len(server.lines()) == len(records), WAIT)
    assert [r.decode() for r in server.lines()] == records


def test_schema_without_serialize_batch_is_used_per_element(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    class Upper:
        def serialize(self, element: str) -> bytes:
            return element.upper().encode()

    writer, _ = open_writer(SocketSink(HOST, server.port, Upper(), delimiter=b";"))
    writer.write(["a", "b"], None)
    writer.flush(True)
    server.wait_for(lambda: server.data == b"A;B;", WAIT)


def test_serialization_error_names_the_sink(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    writer, _ = open_writer(line_sink(server.port))
    with pytest.raises(SerializationError, match=f"socket sink {HOST}:{server.port}"):
        writer.write(["fine", 42], None)


# -- failures -----------------------------------------------------------------------------------


def test_reconnects_after_the_server_drops_the_client_and_loses_nothing(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    writer, ctx = open_writer(line_sink(server.port, retry_delay=0.01))
    records = [f"record-{i:03d}" for i in range(100)]
    for start in range(0, 50, 10):
        writer.write(records[start : start + 10], None)
        writer.flush(False)
    server.wait_for(lambda: len(server.lines()) >= 50, WAIT)

    assert server.drop_clients() == 1
    for start in range(50, 100, 10):
        writer.write(records[start : start + 10], None)
        writer.flush(False)
    writer.flush(True)

    server.wait_for(lambda: {r.decode() for r in server.lines()} >= set(records), WAIT)
    assert_at_least_once_in_order(server.lines(), records)
    assert server.connections_total == 2
    assert ctx.metrics.counter("reconnects").count == 1


def test_retries_exhausted_raise_connector_error(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    port = server.port
    writer, ctx = open_writer(line_sink(port, max_retries=2, retry_delay=0.01))
    writer.write(["delivered"], None)
    writer.flush(False)
    server.wait_for(lambda: server.lines() == [b"delivered"], WAIT)

    server.stop()
    writer.write(["doomed"], None)
    with pytest.raises(ConnectorError, match=f"{HOST}:{port} after 3 attempts") as info:
        writer.flush(True)
    assert isinstance(info.value.__cause__, OSError)
    assert ctx.metrics.counter("reconnects").count >= 1


def test_open_fails_when_nothing_listens(open_writer: OpenWriter) -> None:
    port = free_port()
    with pytest.raises(ConnectorError, match=f"cannot connect to {HOST}:{port} after 2 attempts"):
        open_writer(line_sink(port, max_retries=1, retry_delay=0.01))


def test_cut_while_sending_resends_the_batch_in_flight(
    server: CollectingServer, open_writer: OpenWriter
) -> None:
    with FaultProxy(HOST, server.port) as proxy:
        proxy_host, proxy_port = proxy.address
        writer, ctx = open_writer(
            SocketSink(
                proxy_host, proxy_port, SimpleStringSchema(), retry_delay=0.05, delimiter=b"\n"
            )
        )
        before = [f"before-{i}" for i in range(10)]
        writer.write(before, None)
        writer.flush(False)
        server.wait_for(lambda: len(server.lines()) == 10, WAIT)

        # Stalled, the proxy stops reading; a batch larger than all the socket buffers on the
        # way then keeps sendall blocked, so the cut is sure to hit it mid-send.
        proxy.stall()
        in_flight = [f"in-flight-{i:07d}-{'x' * 60}" for i in range(400_000)]  # ~32 MB
        failure: list[BaseException] = []

        def send() -> None:
            try:
                writer.write(in_flight, None)
                writer.flush(False)
            except BaseException as exc:
                failure.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.3)
        assert sender.is_alive(), "the send finished before the cut; the test proves nothing"
        assert proxy.cut() == 1
        proxy.resume()
        sender.join(WAIT)
        assert not sender.is_alive()
        assert not failure, failure

        after = ["after"]
        writer.write(after, None)
        writer.flush(True)
        expected = before + in_flight + after
        # Not server.wait_for: its predicate runs on every received chunk, and copying ~32 MB
        # each time would take minutes.
        deadline = time.monotonic() + WAIT
        while not server.data.endswith(b"after\n"):
            assert time.monotonic() < deadline, "the records after the cut did not arrive"
            time.sleep(0.05)

    assert_at_least_once_in_order(server.lines(), expected)
    assert server.connections_total == 2
    assert ctx.metrics.counter("reconnects").count == 1
    first, second = server.per_connection()
    # Only the batch in flight may repeat: the new connection starts with it, at a record
    # boundary, and "before" is not sent again.
    assert first.startswith(b"before-0\n")
    assert second.startswith(b"in-flight-0000000-")
    assert b"before" not in second


# -- pipelines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 4])
def test_write_to_socket_pipeline(server: CollectingServer, parallelism: int) -> None:
    env = strom.StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    # write_to_socket adds no delimiter (as in Flink), so fixed-width records keep them apart.
    records = [f"r{i:04d}" for i in range(1000)]
    env.from_collection(records).write_to_socket(HOST, server.port, SimpleStringSchema())
    env.execute("socket sink pipeline")

    def received() -> list[str]:
        out: list[str] = []
        for chunk in server.per_connection():
            text = chunk.decode()
            out.extend(text[i : i + 5] for i in range(0, len(text), 5))
        return out

    server.wait_for(lambda: len(received()) >= len(records), WAIT)
    got = received()
    assert sorted(got) == records
    if parallelism == 1:
        assert got == records
    assert server.connections_total == parallelism
