"""Real-socket helpers for testing connectors against misbehaving networks.

Mocks cannot show how a connector copes with a peer that stops answering, a connection reset in
the middle of a write, or a server that refuses to accept; real loopback sockets can, and fast.

- ``FaultProxy`` relays TCP between a client and a target and can stall, cut, refuse and delay.
- ``LineServer`` plays the server a socket *source* reads lines from.
- ``CollectingServer`` plays the server a socket *sink* writes to, and records what arrived.
- ``free_port`` finds a port nothing listens on (for "connection refused" cases).

Everything binds to 127.0.0.1 by default, runs on daemon threads, stops within a fraction of a
second, and closes every socket it opened (test suites that turn ``ResourceWarning`` into an
error stay green). Each helper is a context manager that starts on entry and stops on exit.
"""

from __future__ import annotations

import errno
import math
import select
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

__all__ = ["CollectingServer", "FaultProxy", "LineServer", "free_port"]

# Every blocking call made by a helper thread is bounded by this, so that stop(), cut() and
# stall() take effect within about this long without closing sockets under another thread's feet.
_POLL = 0.05
_JOIN_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 5.0
# Bounds how long a test thread can hang in send_lines() on a client that stopped reading.
_SEND_TIMEOUT = 5.0
_CHUNK = 65536
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller uses it; good enough for pointing a client at a
    port where nothing listens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listen(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=_family(host), backlog=128)


def _close(sock: socket.socket, *, reset: bool = False) -> None:
    if reset and sock.fileno() != -1:
        # Linger on with a zero timeout makes close() send RST instead of FIN, so the peer sees
        # "connection reset" at once, as after a crash or a middlebox dropping state.
        linger = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
    sock.close()


def _nodelay(sock: socket.socket) -> None:
    # Small test messages must not sit in Nagle's buffer waiting for an ACK: that adds delays the
    # test did not ask for.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class FaultProxy:
    """A TCP relay between clients and ``target_host:target_port`` with fault controls.

    Point the code under test at ``proxy.address`` instead of the real server, then break the
    network on cue:

    - ``stall()`` stops forwarding in both directions while keeping every connection open; the
      proxy stops reading, so data backs up in the kernel buffers like behind a hung peer. Once
      ``stall()`` returns no further byte is forwarded until ``resume()``.
    - ``cut()`` aborts every current connection on both sides (RST where the platform allows).
    - ``refuse(True)`` makes the proxy reset new connections as soon as they arrive.
    - ``set_latency(s)`` holds each chunk ``s`` seconds before forwarding it, in each direction.

    ``bytes_up`` (client to target) and ``bytes_down`` count bytes forwarded; ``connections_total``
    counts connections relayed (refused ones excluded, see ``refused_total``).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self._target = (target_host, target_port)
        self._listen_at = (listen_host, listen_port)
        self._cond = threading.Condition()
        self._links: set[_Link] = set()
        self._stalled = False
        self._inflight = 0
        self._refusing = False
        self._latency = 0.0
        self._bytes_up = 0
        self._bytes_down = 0
        self._connections_total = 0
        self._refused_total = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and start accepting; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy can only be started once")
        listener = _listen(*self._listen_at)
        listener.settimeout(_POLL)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"strom-faultproxy-accept-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and the listener, join all threads."""
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        # The accept thread must be gone before connections are collected, or it could add one
        # after the snapshot below and leave it running.
        self._thread.join(_JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        self._abort_all(reset=False)

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where ----------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` clients should connect to."""
        if self._listener is None:
            raise RuntimeError("FaultProxy is not started")
        name = self._listener.getsockname()
        return (name[0], name[1])

    @property
    def port(self) -> int:
        return self.address[1]

    # -- faults ---------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open. Undo with ``resume()``."""
        with self._cond:
            self._stalled = True
            # Wait for sends already under way, so that the caller can rely on silence from
            # here on. Each send is bounded by _POLL, so this is short.
            self._cond.wait_for(lambda: self._inflight == 0, timeout=_JOIN_TIMEOUT)

    def resume(self) -> None:
        """Forward again after ``stall()``; whatever queued up meanwhile flows on."""
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def cut(self) -> int:
        """Abort every current connection, both sides; returns how many were cut.

        New connections are still accepted afterwards (use ``refuse`` to prevent that).
        """
        return self._abort_all(reset=True)

    def refuse(self, on: bool = True) -> None:
        """While on, reset each new connection right after accepting it."""
        with self._cond:
            self._refusing = on

    def set_latency(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` before forwarding it (each direction; 0 turns it off)."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        with self._cond:
            self._latency = float(seconds)

    # -- counters -------------------------------------------------------------------------------

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded from clients to the target."""
        with self._cond:
            return self._bytes_up

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded from the target to clients."""
        with self._cond:
            return self._bytes_down

    @property
    def connections_total(self) -> int:
        """Connections accepted and relayed (or being relayed) since start."""
        with self._cond:
            return self._connections_total

    @property
    def refused_total(self) -> int:
        """Connections reset on arrival because ``refuse`` was on."""
        with self._cond:
            return self._refused_total

    @property
    def active_connections(self) -> int:
        """Connections currently open through the proxy."""
        with self._cond:
            return len(self._links)

    # -- internals ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        serial = 0
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                # EMFILE, ECONNABORTED and the like: back off briefly instead of spinning.
                self._stopping.wait(_POLL)
                continue
            with self._cond:
                refusing = self._refusing
                if refusing:
                    self._refused_total += 1
                else:
                    serial += 1
                    self._connections_total += 1
                    link = _Link(self, client, serial)
                    self._links.add(link)
            if refusing:
                _close(client, reset=True)
                continue
            link.thread.start()

    def _abort_all(self, *, reset: bool) -> int:
        with self._cond:
            links = list(self._links)
            self._cond.notify_all()
        for link in links:
            link.abort(reset=reset)
        for link in links:
            link.thread.join(_JOIN_TIMEOUT)
        return len(links)

    def _forget(self, link: _Link) -> None:
        with self._cond:
            self._links.discard(link)

    def _latency_now(self) -> float:
        with self._cond:
            return self._latency

    def _wait_unstalled(self, closing: threading.Event) -> bool:
        """Block while stalled; False once the link is closing."""
        with self._cond:
            while self._stalled and not closing.is_set():
                self._cond.wait(_POLL)
            return not closing.is_set()

    def _begin_send(self, closing: threading.Event) -> bool:
        with self._cond:
            while self._stalled and not closing.is_set():
                self._cond.wait(_POLL)
            if closing.is_set():
                return False
            self._inflight += 1
            return True

    def _end_send(self, upstream: bool, sent: int) -> None:
        with self._cond:
            self._inflight -= 1
            if upstream:
                self._bytes_up += sent
            else:
                self._bytes_down += sent
            self._cond.notify_all()


class _Link:
    """One relayed connection: the client socket, its upstream socket and two pumps."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, serial: int) -> None:
        self.proxy = proxy
        self.client = client
        self.closing = threading.Event()
        self.reset = False
        self.thread = threading.Thread(
            target=self._run, name=f"strom-faultproxy-link-{serial}", daemon=True
        )

    def abort(self, *, reset: bool) -> None:
        if reset:
            self.reset = True
        self.closing.set()

    def _run(self) -> None:
        upstream: socket.socket | None = None
        try:
            self.client.settimeout(_POLL)
            _nodelay(self.client)
            upstream = self._connect()
            if upstream is None:
                # The target is down: the client should notice as abruptly as with no proxy.
                self.reset = True
                return
            down = threading.Thread(
                target=self._pump,
                args=(upstream, self.client, False),
                name=f"{self.thread.name}-down",
                daemon=True,
            )
            down.start()
            self._pump(self.client, upstream, True)
            down.join()
        finally:
            # Only this thread closes the link's sockets, and only after both pumps are done, so
            # no socket is ever closed while another thread is using it.
            _close(self.client, reset=self.reset)
            if upstream is not None:
                _close(upstream, reset=self.reset)
            self.proxy._forget(self)

    def _connect(self) -> socket.socket | None:
        # A non-blocking connect polled with _POLL, so that stop() is not held up by a target
        # that does not answer.
        host, port = self.proxy._target
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        for family, kind, proto, _, addr in infos:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue
            try:
                sock.setblocking(False)
                err = sock.connect_ex(addr)
                deadline = time.monotonic() + _CONNECT_TIMEOUT
                while err in _IN_PROGRESS:
                    if self.closing.is_set() or time.monotonic() >= deadline:
                        break
                    _, writable, _ = select.select([], [sock], [], _POLL)
                    if writable:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    sock.settimeout(_POLL)
                    _nodelay(sock)
                    return sock
            except OSError:
                pass
            sock.close()
        return None

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        proxy = self.proxy
        while proxy._wait_unstalled(self.closing):
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                self.abort(reset=True)
                return
            if not data:
                # Pass the half-close on: the other direction may still have data to deliver.
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            latency = proxy._latency_now()
            if latency > 0 and self.closing.wait(latency):
                return
            if not self._forward(dst, data, upstream):
                return

    def _forward(self, dst: socket.socket, data: bytes, upstream: bool) -> bool:
        proxy = self.proxy
        view = memoryview(data)
        while view:
            if not proxy._begin_send(self.closing):
                return False
            sent = 0
            try:
                sent = dst.send(view)
            except TimeoutError:
                pass
            except OSError:
                self.abort(reset=True)
                return False
            finally:
                proxy._end_send(upstream, sent)
            view = view[sent:]
        return True


class _TcpServer:
    """Listener plus one selector thread that accepts clients and reads what they send."""

    _kind = "server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listen_at = (host, port)
        # Re-entrant so that wait_for() predicates can call the public accessors.
        self._cond = threading.Condition(threading.RLock())
        self._clients: list[socket.socket] = []
        self._connections_total = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and start accepting; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} can only be started once")
        listener = _listen(*self._listen_at)
        listener.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        self._listener = listener
        self._selector = selector
        self._thread = threading.Thread(
            target=self._loop, name=f"strom-{self._kind}-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every client and the listener, join the thread."""
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(_JOIN_TIMEOUT)
        with self._cond:
            for client in list(self._clients):
                self._discard(client, reset=False)
            if self._selector is not None:
                self._selector.close()
            if self._listener is not None:
                self._listener.close()

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        if self._listener is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        name = self._listener.getsockname()
        return (name[0], name[1])

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def connections_total(self) -> int:
        """Connections accepted since start."""
        with self._cond:
            return self._connections_total

    @property
    def active_connections(self) -> int:
        """Connections currently open."""
        with self._cond:
            return len(self._clients)

    def _on_connect(self, client: socket.socket) -> None:
        pass

    def _on_data(self, client: socket.socket, data: bytes) -> None:
        pass

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None
        while not self._stopping.is_set():
            events = selector.select(_POLL)
            with self._cond:
                for key, _ in events:
                    client: socket.socket | None = key.data
                    if client is None:
                        self._accept()
                    elif client in self._clients:
                        # Skipped when another thread closed it since select() returned.
                        self._read(client)

    def _accept(self) -> None:
        assert self._listener is not None
        assert self._selector is not None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.settimeout(_SEND_TIMEOUT)
        _nodelay(client)
        self._clients.append(client)
        self._selector.register(client, selectors.EVENT_READ, client)
        self._connections_total += 1
        self._on_connect(client)
        self._cond.notify_all()

    def _read(self, client: socket.socket) -> None:
        try:
            data = client.recv(_CHUNK)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if data:
            self._on_data(client, data)
            self._cond.notify_all()
        else:
            self._discard(client, reset=False)

    def _discard(self, client: socket.socket, *, reset: bool) -> None:
        with self._cond:
            self._clients.remove(client)
            if self._selector is not None:
                try:
                    self._selector.unregister(client)
                except (KeyError, ValueError):
                    pass
            _close(client, reset=reset)
            self._cond.notify_all()

    def _close_all(self, *, reset: bool) -> int:
        with self._cond:
            clients = list(self._clients)
            for client in clients:
                self._discard(client, reset=reset)
            return len(clients)


class LineServer(_TcpServer):
    """The server end for socket-source tests: accepts clients and sends them lines.

    ::

        with LineServer() as server:
            source = SocketSource("127.0.0.1", server.port)  # the code under test
            server.wait_for_client(timeout=5)
            server.send_lines(["a", "b"])
            server.close_clients()                           # source sees EOF
    """

    _kind = "lineserver"

    def wait_for_client(self, timeout: float = 5.0) -> None:
        """Return once a client is connected; ``TimeoutError`` if none within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._clients), timeout):
                raise TimeoutError(f"no client connected to port {self.port} within {timeout} s")

    def send_lines(self, lines: Iterable[str], delimiter: str = "\n") -> int:
        """Send each line followed by ``delimiter`` (UTF-8) to every connected client.

        Returns how many clients got it (clients found gone are dropped); ``RuntimeError`` if no
        client is connected at all, which is almost always a missing ``wait_for_client()``.
        """
        return self.send("".join(line + delimiter for line in lines).encode())

    def send(self, data: bytes) -> int:
        """Send raw bytes to every connected client, e.g. half a line; see ``send_lines``."""
        with self._cond:
            clients = list(self._clients)
            if not clients:
                raise RuntimeError("no client is connected; call wait_for_client() first")
            delivered = 0
            for client in clients:
                try:
                    client.sendall(data)
                except OSError:
                    self._discard(client, reset=False)
                else:
                    delivered += 1
            return delivered

    def close_clients(self) -> int:
        """Close current connections cleanly (the clients read EOF); returns how many."""
        return self._close_all(reset=False)


class CollectingServer(_TcpServer):
    """The server end for socket-sink tests: accepts any connections and records all bytes.

    Each connection's bytes are kept apart, in the order connections were accepted, so that data
    from concurrent connections never interleaves mid-record.
    """

    _kind = "collectingserver"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._received: list[bytearray] = []
        self._buffers: dict[socket.socket, bytearray] = {}

    @property
    def data(self) -> bytes:
        """Everything received so far: each connection's bytes, connections in accept order."""
        with self._cond:
            return b"".join(self._received)

    def per_connection(self) -> list[bytes]:
        """What each connection sent, in accept order (closed connections included)."""
        with self._cond:
            return [bytes(buf) for buf in self._received]

    def lines(self, delimiter: bytes = b"\n") -> list[bytes]:
        """Complete lines received, without the delimiter, connections in accept order.

        A connection's unterminated tail (a record cut off by a failure, or still arriving) is
        left out; it is still visible in ``data``.
        """
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        with self._cond:
            result: list[bytes] = []
            for buf in self._received:
                result.extend(bytes(buf).split(delimiter)[:-1])
            return result

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once ``predicate()`` holds; ``TimeoutError`` (showing the data) if not in time.

        The predicate is re-checked whenever data or a connection arrives, with the server's lock
        held, so it sees a consistent state and must not block.
        """
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                data = self.data
                shown = data if len(data) <= 200 else data[:200] + b"..."
                raise TimeoutError(
                    f"condition not met within {timeout} s; {len(data)} bytes received over "
                    f"{self._connections_total} connection(s): {shown!r}",
                )

    def drop_clients(self) -> int:
        """Reset current connections, as a crashed server would; returns how many."""
        return self._close_all(reset=True)

    def _on_connect(self, client: socket.socket) -> None:
        buf = bytearray()
        self._received.append(buf)
        self._buffers[client] = buf

    def _on_data(self, client: socket.socket, data: bytes) -> None:
        self._buffers[client] += data

    def _discard(self, client: socket.socket, *, reset: bool) -> None:
        with self._cond:
            self._buffers.pop(client, None)
            super()._discard(client, reset=reset)
