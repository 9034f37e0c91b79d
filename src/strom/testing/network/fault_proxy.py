"""``FaultProxy``: a TCP relay between a client and a server that breaks the network on cue."""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from typing import Self

from strom.testing.network._sockets import (
    CHUNK,
    CONNECT_TIMEOUT,
    IN_PROGRESS,
    JOIN_TIMEOUT,
    POLL,
    Listening,
    close_socket,
    listen,
    nodelay,
)

__all__ = ["FaultProxy"]


class FaultProxy(Listening):
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
        listener = listen(*self._listen_at)
        listener.settimeout(POLL)
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
        self._thread.join(JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        self._abort_all(reset=False)

    # -- faults ---------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open. Undo with ``resume()``."""
        with self._cond:
            self._stalled = True
            # Wait for sends already under way, so that the caller can rely on silence from
            # here on. Each send is bounded by POLL, so this is short.
            self._cond.wait_for(lambda: self._inflight == 0, timeout=JOIN_TIMEOUT)

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
                self._stopping.wait(POLL)
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
                close_socket(client, reset=True)
                continue
            link.thread.start()

    def _abort_all(self, *, reset: bool) -> int:
        with self._cond:
            links = list(self._links)
            self._cond.notify_all()
        for link in links:
            link.abort(reset=reset)
        for link in links:
            link.thread.join(JOIN_TIMEOUT)
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
                self._cond.wait(POLL)
            return not closing.is_set()

    def _begin_send(self, closing: threading.Event) -> bool:
        with self._cond:
            while self._stalled and not closing.is_set():
                self._cond.wait(POLL)
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
            self.client.settimeout(POLL)
            nodelay(self.client)
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
            close_socket(self.client, reset=self.reset)
            if upstream is not None:
                close_socket(upstream, reset=self.reset)
            self.proxy._forget(self)

    def _connect(self) -> socket.socket | None:
        # A non-blocking connect polled with POLL, so that stop() is not held up by a target
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
                deadline = time.monotonic() + CONNECT_TIMEOUT
                while err in IN_PROGRESS:
                    if self.closing.is_set() or time.monotonic() >= deadline:
                        break
                    _, writable, _ = select.select([], [sock], [], POLL)
                    if writable:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    sock.settimeout(POLL)
                    nodelay(sock)
                    return sock
            except OSError:
                pass
            sock.close()
        return None

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        proxy = self.proxy
        while proxy._wait_unstalled(self.closing):
            try:
                data = src.recv(CHUNK)
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
