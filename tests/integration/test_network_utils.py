"""Integration tests for strom.testing.network over real loopback sockets.

Timing is only ever asserted as a loose lower bound (latency was applied at all) or as a deadline
for something that must happen; never as a performance expectation.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from strom.testing.network import CollectingServer, FaultProxy, LineServer, free_port

pytestmark = pytest.mark.integration

WAIT = 3.0  # deadline for things that must happen; they normally take milliseconds


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(WAIT * 2)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # the proxy cut or reset us; that is what these tests do


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*echo) as p:
        yield p


def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer closed or reset the connection (EOF or reset on the next read)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ConnectionAbortedError):
        return True


def turned_away(address: tuple[str, int]) -> bool:
    """True if a new connection is reset or closed, during connect or on the first read."""
    try:
        client = connect(address)
    except (ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError):
        return True
    with client:
        return closed_by_peer(client)


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("strom-faultproxy")]


# -- FaultProxy ---------------------------------------------------------------------------------


def test_proxy_relays_both_ways_and_counts(proxy: FaultProxy) -> None:
    assert proxy.address[0] == "127.0.0.1"
    with connect(proxy.address) as client:
        client.sendall(b"hello")
        assert recv_exactly(client, 5) == b"hello"
        client.sendall(b"world!")
        assert recv_exactly(client, 6) == b"world!"
        # Counters move just after each send returns, possibly after the echo already arrived.
        eventually(lambda: (proxy.bytes_up, proxy.bytes_down) == (11, 11))
        assert proxy.connections_total == 1
        assert proxy.active_connections == 1
    eventually(lambda: proxy.active_connections == 0)


def test_proxy_relays_large_payload(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, more than any socket buffer
    with connect(proxy.address) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        received = recv_exactly(client, len(payload))
        sender.join(WAIT)
    assert received == payload


def test_stall_holds_data_until_resume(proxy: FaultProxy) -> None:
    with connect(proxy.address) as client:
        client.sendall(b"before")
        assert recv_exactly(client, 6) == b"before"
        eventually(lambda: proxy.bytes_down == 6)

        proxy.stall()
        client.sendall(b"during")
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(100)
        assert proxy.bytes_up == 6
        assert proxy.active_connections == 1

        proxy.resume()
        client.settimeout(WAIT)
        assert recv_exactly(client, 6) == b"during"


def test_cut_resets_client_and_proxy_keeps_accepting(proxy: FaultProxy) -> None:
    with connect(proxy.address) as client:
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        assert proxy.cut() == 1
        assert closed_by_peer(client)
    assert proxy.active_connections == 0

    with connect(proxy.address) as again:
        again.sendall(b"y")
        assert recv_exactly(again, 1) == b"y"
    assert proxy.connections_total == 2


def test_cut_while_stalled(proxy: FaultProxy) -> None:
    with connect(proxy.address) as client:
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        proxy.stall()
        client.sendall(b"lost")
        assert proxy.cut() == 1
        assert closed_by_peer(client)
    proxy.resume()


def test_refuse_closes_new_connections(proxy: FaultProxy) -> None:
    proxy.refuse(True)
    assert turned_away(proxy.address)
    eventually(lambda: proxy.refused_total == 1)
    assert proxy.connections_total == 0

    proxy.refuse(False)
    with connect(proxy.address) as client:
        client.sendall(b"ok")
        assert recv_exactly(client, 2) == b"ok"


def test_latency_is_applied(proxy: FaultProxy) -> None:
    proxy.set_latency(0.1)
    with connect(proxy.address) as client:
        started = time.monotonic()
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        elapsed = time.monotonic() - started
    # Held once each way; only check that the delay happened at all.
    assert elapsed >= 0.15
    with pytest.raises(ValueError, match="latency"):
        proxy.set_latency(-1)


def test_target_down_resets_client() -> None:
    with FaultProxy("127.0.0.1", free_port()) as proxy:
        assert turned_away(proxy.address)
        eventually(lambda: proxy.active_connections == 0)


def test_stop_closes_connections_listener_and_threads(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(*echo).start()
    with connect(proxy.address) as client:
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        address = proxy.address
        proxy.stop()
        assert closed_by_peer(client)
    assert proxy_threads() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=WAIT).close()
    proxy.stop()  # idempotent


def test_proxy_not_started_has_no_address(echo: tuple[str, int]) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = FaultProxy(*echo).port


# -- LineServer ---------------------------------------------------------------------------------


def test_line_server_round_trip() -> None:
    with LineServer() as server:
        with pytest.raises(RuntimeError, match="no client"):
            server.send_lines(["early"])
        with connect(("127.0.0.1", server.port)) as client:
            server.wait_for_client(WAIT)
            assert server.send_lines(["a", "b"]) == 1
            assert server.send_lines(["c"], delimiter="\r\n") == 1
            server.send(b"par")
            assert recv_exactly(client, 10) == b"a\nb\nc\r\npar"
            assert server.close_clients() == 1
            assert closed_by_peer(client)
        assert server.active_connections == 0
        with pytest.raises(TimeoutError, match="no client"):
            server.wait_for_client(0.05)


def test_line_server_sees_reconnect() -> None:
    with LineServer() as server:
        for _ in range(2):
            with connect(("127.0.0.1", server.port)) as client:
                server.wait_for_client(WAIT)
                server.send_lines(["hi"])
                assert recv_exactly(client, 3) == b"hi\n"
            eventually(lambda: server.active_connections == 0)
        assert server.connections_total == 2


# -- CollectingServer ---------------------------------------------------------------------------


def test_collecting_server_sequential_connections() -> None:
    with CollectingServer() as server:
        with connect(server.address) as first:
            first.sendall(b"x\ny\n")
        with connect(server.address) as second:
            second.sendall(b"z\npartial")
            server.wait_for(lambda: server.data.endswith(b"partial"), WAIT)
        assert server.lines() == [b"x", b"y", b"z"]
        assert server.data == b"x\ny\nz\npartial"
        assert server.per_connection() == [b"x\ny\n", b"z\npartial"]
        assert server.connections_total == 2


def test_collecting_server_keeps_concurrent_connections_apart() -> None:
    with CollectingServer() as server:
        with connect(server.address) as a, connect(server.address) as b:
            server.wait_for(lambda: server.active_connections == 2, WAIT)
            for n in range(3):
                a.sendall(f"a{n}|".encode())
                b.sendall(f"b{n}|".encode())
            server.wait_for(lambda: len(server.lines(b"|")) == 6, WAIT)
        assert sorted(server.per_connection()) == [b"a0|a1|a2|", b"b0|b1|b2|"]


def test_collecting_server_drop_clients_and_timeout_message() -> None:
    with CollectingServer() as server:
        with connect(server.address) as client:
            client.sendall(b"one\n")
            server.wait_for(lambda: server.lines() == [b"one"], WAIT)
            assert server.drop_clients() == 1
            assert closed_by_peer(client)
        assert server.active_connections == 0
        with pytest.raises(TimeoutError, match=r"4 bytes received over 1 connection"):
            server.wait_for(lambda: len(server.lines()) > 1, 0.05)


def test_sink_through_proxy_survives_cut() -> None:
    with CollectingServer() as server, FaultProxy(*server.address) as proxy:
        with connect(proxy.address) as client:
            client.sendall(b"r1\n")
            server.wait_for(lambda: server.lines() == [b"r1"], WAIT)
            proxy.cut()
        with connect(proxy.address) as client:
            client.sendall(b"r2\n")
            server.wait_for(lambda: server.lines() == [b"r1", b"r2"], WAIT)
        assert server.connections_total == 2


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.create_server(("127.0.0.1", port)):
        pass
