"""The reader of ``SocketTextSource``: connect, read, split into lines, reconnect.

A state machine advanced from ``poll`` without ever blocking longer than ``max_poll_wait``:
names resolve on a helper thread (``Resolver``), connects and reads are non-blocking, and
``wakeup``/``close`` interrupt a waiting ``poll`` through a self-pipe. ``LineSplitter`` cuts the
bytes into lines.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING, Any

from strom.connectors.base import ReaderContext, SourceReader
from strom.connectors.base.retry import ConstantBackoff, RetryPolicy
from strom.connectors.socket._common import endpoint
from strom.connectors.socket._lines import LineSplitter
from strom.connectors.socket._resolve import AddrInfo, Resolver

if TYPE_CHECKING:
    from strom.connectors.socket.source import SocketTextSource

__all__ = ["SocketTextReader"]

# The source's logger: the reader's messages are what the source logs.
log = logging.getLogger("strom.connectors.socket.source")

_CHUNK = 65536
# Reading stops after this much per poll step so that one fast server cannot keep poll from
# returning the lines it already has.
_MAX_READ_PER_STEP = 1 << 20
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


class _State(Enum):
    IDLE = "idle"  # no connection; start an attempt on the next step
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting retry_delay before the next attempt
    FINISHED = "finished"


class SocketTextReader(SourceReader[str]):
    """The reader of a ``SocketTextSource``: a connection state machine driven from ``poll``."""

    def __init__(self, source: SocketTextSource, ctx: ReaderContext) -> None:
        self._host = source.host
        self._port = source.port
        self._where = endpoint(source.host, source.port)
        self._connect_timeout = source.connect_timeout
        policy = RetryPolicy(
            max_attempts=None if source.max_retry < 0 else source.max_retry + 1,
            backoff=ConstantBackoff(source.retry_delay),
        )
        self._delays = policy.delays()
        self._max_wait = max(0.0, ctx.max_poll_wait)
        self._records_in = ctx.metrics.counter("records_in")
        self._reconnects = ctx.metrics.counter("reconnects")

        self._state = _State.IDLE
        self._failure: BaseException | None = None
        self._sock: socket.socket | None = None
        self._sock_ready = False
        self._addrs: list[AddrInfo] = []
        self._resolver: Resolver | None = None
        self._connect_deadline = 0.0
        self._retry_at = 0.0
        self._attempts = 0
        self._connections = 0
        self._last_error: BaseException | None = None
        self._last_error_dns = False

        self._splitter = LineSplitter(source.delimiter, source.encoding, self._where)

        # poll holds _lock; close() takes it so that sockets are never closed under a running
        # poll. _wake_lock guards only the self-pipe, which wakeup() uses from other threads.
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._woken = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self, restored_state: list[Any] | None) -> None:
        # restored_state is ignored: there is no position in a socket to go back to.
        with self._lock:
            if self._selector is not None or self._closed:
                return
            wake_r, wake_w = socket.socketpair()
            wake_r.setblocking(False)
            wake_w.setblocking(False)
            selector = selectors.DefaultSelector()
            selector.register(wake_r, selectors.EVENT_READ, "wake")
            with self._wake_lock:
                self._wake_r, self._wake_w = wake_r, wake_w
            self._selector = selector
            # Start connecting now, so the server sees the client before the first poll.
            self._step(time.monotonic())

    def wakeup(self) -> None:
        self._woken = True
        self._poke()

    def close(self) -> None:
        self._closed = True
        self.wakeup()
        with self._lock:
            self._state = _State.FINISHED
            self._drop_socket()
            self._splitter.clear()
            if self._selector is not None:
                self._selector.close()
                self._selector = None
            with self._wake_lock:
                for s in (self._wake_r, self._wake_w):
                    if s is not None:
                        s.close()
                self._wake_r = self._wake_w = None

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return []

    # -- polling --------------------------------------------------------------------------------

    def poll(self, max_records: int) -> list[str] | None:
        with self._lock:
            if self._closed:
                return None
            selector = self._selector
            if selector is None:
                raise RuntimeError("SocketTextSource reader: call open() before poll()")
            deadline = time.monotonic() + self._max_wait
            while True:
                if self._splitter.lines:
                    return self._take(max_records)
                if self._failure is not None:
                    raise self._failure
                if self._state is _State.FINISHED:
                    return None
                now = time.monotonic()
                wait = self._step(now)
                if self._splitter.lines or self._failure is not None or self._finished():
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._woken:
                    self._woken = False
                    return []
                events = selector.select(remaining if wait is None else min(remaining, wait))
                for key, _ in events:
                    if key.data == "wake":
                        self._drain_wake()
                    else:
                        self._sock_ready = True

    def _finished(self) -> bool:
        return self._state is _State.FINISHED

    def _take(self, max_records: int) -> list[str]:
        out = self._splitter.take(max_records)
        self._records_in.inc(len(out))
        return out

    def _step(self, now: float) -> float | None:
        """Advance the connection without blocking; return the seconds until a timer is due
        (``None``: only I/O or a wakeup can change anything)."""
        while True:
            state = self._state
            if state is _State.IDLE:
                self._start_attempt(now)
            elif state is _State.RESOLVING:
                resolver = self._resolver
                assert resolver is not None
                if not resolver.done.is_set():
                    return None
                self._resolver = None
                if resolver.error is not None:
                    self._attempt_failed(resolver.error, now, dns=True)
                else:
                    self._addrs = list(resolver.result)
                    self._connect_next(now)
            elif state is _State.CONNECTING:
                sock = self._sock
                assert sock is not None
                if self._sock_ready:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        self._connected()
                        continue
                    self._drop_socket()
                    self._last_error = OSError(err, os.strerror(err))
                    self._connect_next(now)
                elif now >= self._connect_deadline:
                    self._drop_socket()
                    self._last_error = TimeoutError(
                        f"connect timed out after {self._connect_timeout:g} s"
                    )
                    self._connect_next(now)
                else:
                    return self._connect_deadline - now
            elif state is _State.CONNECTED:
                self._read()
                if self._state is _State.CONNECTED:
                    return None
            elif state is _State.BACKOFF:
                if now < self._retry_at:
                    return self._retry_at - now
                self._state = _State.IDLE
            else:
                return None
            if self._failure is not None:
                return None

    def _start_attempt(self, now: float) -> None:
        self._attempts += 1
        if self._attempts > 1:
            self._reconnects.inc()
        try:
            # Literal addresses resolve instantly; only names need the helper thread.
            self._addrs = list(
                socket.getaddrinfo(
                    self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
                )
            )
        except (OSError, UnicodeError):
            self._resolver = Resolver(self._host, self._port, self._poke)
            self._state = _State.RESOLVING
            return
        self._connect_next(now)

    def _connect_next(self, now: float) -> None:
        """Start a non-blocking connect to the next resolved address (as create_connection
        does, each address in turn); when none is left the attempt has failed."""
        while self._addrs:
            family, kind, proto, _, addr = self._addrs.pop(0)
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                self._last_error = exc
                continue
            try:
                sock.setblocking(False)
                err = sock.connect_ex(addr)
            except OSError as exc:
                sock.close()
                self._last_error = exc
                continue
            if err != 0 and err not in _IN_PROGRESS:
                sock.close()
                self._last_error = OSError(err, os.strerror(err))
                continue
            self._sock = sock
            self._sock_ready = err == 0
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_WRITE, "sock")
            self._connect_deadline = now + self._connect_timeout
            self._state = _State.CONNECTING
            return
        self._attempt_failed(self._last_error or OSError("no usable address"), now, dns=False)

    def _connected(self) -> None:
        sock, selector = self._sock, self._selector
        assert sock is not None
        assert selector is not None
        selector.modify(sock, selectors.EVENT_READ, "sock")
        try:
            # A server that vanished without a FIN would otherwise leave us waiting forever.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        self._state = _State.CONNECTED
        self._connections += 1
        self._splitter.start_connection()
        log.info("socket source connected to %s (connection %d)", self._where, self._connections)

    def _attempt_failed(self, error: BaseException, now: float, *, dns: bool) -> None:
        self._last_error = error
        self._last_error_dns = dns
        delay = next(self._delays, None)
        if delay is not None:
            log.warning(
                "socket source: connecting to %s failed (%s); retrying in %g s",
                self._where,
                error,
                delay,
            )
            self._retry_at = now + delay
            self._state = _State.BACKOFF
            return
        attempts = f"{self._attempts} attempt{'s' if self._attempts != 1 else ''}"
        if self._connections == 0:
            # Never connected: almost always a wrong address or a server that is not up; an
            # empty stream would hide that.
            if dns:
                message = (
                    f"socket source cannot resolve host {self._host!r} (for {self._where}) "
                    f"after {attempts}: {error}"
                )
            else:
                message = f"socket source cannot connect to {self._where} after {attempts}: {error}"
            failure = ConnectionError(message)
            failure.__cause__ = error
            self._failure = failure
            self._state = _State.FINISHED
            return
        log.warning(
            "socket source: reconnecting to %s failed (%s) and no retries are left; the stream "
            "ends",
            self._where,
            error,
        )
        self._state = _State.FINISHED

    def _connection_ended(self, *, clean: bool) -> None:
        self._drop_socket()
        dropped = self._splitter.end_connection(self._connections, clean=clean)
        if dropped:
            # After a reset the tail is most likely a torn line; emitting it would pass on junk.
            log.warning(
                "socket source: connection to %s was reset; dropping %d bytes of an "
                "unterminated line",
                self._where,
                dropped,
            )
        delay = next(self._delays, None)
        if delay is None:
            log.info("socket source: connection to %s ended; no retries left", self._where)
            self._state = _State.FINISHED
        else:
            log.info(
                "socket source: connection to %s ended; reconnecting in %g s", self._where, delay
            )
            self._retry_at = time.monotonic() + delay
            self._state = _State.BACKOFF

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        self._sock_ready = False
        splitter, connection = self._splitter, self._connections
        read = 0
        while read < _MAX_READ_PER_STEP:
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                splitter.split(connection)
                self._connection_ended(clean=False)
                return
            if not data:
                splitter.split(connection)
                self._connection_ended(clean=True)
                return
            splitter.feed(data)
            read += len(data)
        splitter.split(connection)

    # -- plumbing -------------------------------------------------------------------------------

    def _drop_socket(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        self._sock_ready = False
        if self._selector is not None:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        sock.close()

    def _poke(self) -> None:
        with self._wake_lock:
            if self._wake_w is None:
                return
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass  # the pipe is full, so a wakeup is already pending

    def _drain_wake(self) -> None:
        wake_r = self._wake_r
        if wake_r is None:
            return
        try:
            while wake_r.recv(4096):
                pass
        except OSError:
            pass
