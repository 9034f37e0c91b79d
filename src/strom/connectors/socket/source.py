"""Socket text source: lines read from a TCP server (Flink's ``socketTextStream``).

Guarantee: **at-most-once**. A socket cannot be replayed: once bytes are read from it, the
server will not send them again, and the server does not know which lines a checkpoint covered.
After a failure and restore the source simply connects anew and reads what the server sends from
then on, so lines that were in flight are lost and none is read twice. The reader's state is
empty (``snapshot_state`` returns ``[]``).

Semantics follow Flink: connect, split the byte stream on ``delimiter``, emit decoded lines; when
the server closes the connection, reconnect after ``retry_delay`` while retries remain
(``max_retry=0``: end at once, ``-1``: retry forever, ``n``: at most *n* reconnects over the
reader's life, failed connection attempts included). A reader that never managed to connect fails
with ``ConnectionError`` once retries run out; one that did connect simply finishes.

The reader never blocks longer than ``ctx.max_poll_wait``: name resolution runs on a helper
thread, connecting and reading are non-blocking and driven from ``poll``, and ``wakeup``/
``close`` interrupt a waiting ``poll`` through a self-pipe.
"""

from __future__ import annotations

import codecs
import errno
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

from strom.connectors.base import DeliveryGuarantee, ReaderContext, Source, SourceReader
from strom.connectors.base.retry import ConstantBackoff, RetryPolicy
from strom.formats import DeserializationError

__all__ = ["SocketTextSource"]

log = logging.getLogger(__name__)

_CHUNK = 65536
# Reading stops after this much per poll step so that one fast server cannot keep poll from
# returning the lines it already has.
_MAX_READ_PER_STEP = 1 << 20
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}
_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _endpoint(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so that the port stays readable."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_address(host: str, port: int) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    # bool is an int subclass; port=True is a bug, not port 1.
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer with 0 < port < 65536, got {port!r}")


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> float:
    # "not (...)" so that NaN, which compares false to everything, is rejected as well.
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def _check_retries(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"{name} must be an integer >= 0, or -1 to retry forever, got {value!r}")
    return value


class SocketTextSource(Source[str]):
    """Reads delimiter-separated text lines from a TCP server. Guarantee: at-most-once.

    Args:
        host: server name or address.
        port: server port, ``0 < port < 65536``.
        delimiter: line separator, one or more characters. With ``"\\n"`` a trailing ``"\\r"``
            is stripped too, so CRLF lines work.
        max_retry: reconnects allowed after the connection ends or an attempt fails: 0 ends
            the stream when the server closes; -1 retries forever.
        retry_delay: seconds to wait before each reconnect.
        encoding: text encoding of the stream; it must be ASCII-compatible (lines are split on
            the encoded delimiter bytes, which is only sound for such encodings).
        connect_timeout: seconds one connection attempt may take.

    The source is not parallel (``max_parallelism = 1``): every subtask would open its own
    connection and most servers would send each of them everything.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_MOST_ONCE}
    )
    bounded = False
    max_parallelism = 1

    def __init__(
        self,
        host: str,
        port: int,
        delimiter: str = "\n",
        max_retry: int = 0,
        retry_delay: float = 1.0,
        encoding: str = "utf-8",
        connect_timeout: float = 5.0,
    ) -> None:
        _check_address(host, port)
        if not isinstance(delimiter, str) or not delimiter:
            raise ValueError(f"delimiter must be a non-empty string, got {delimiter!r}")
        codecs.lookup(encoding)  # an unknown encoding fails when the job is built
        probe = "line\r\n" + delimiter
        if probe.encode(encoding) != probe.encode("utf-8") or not delimiter.encode(encoding):
            # UTF-16/32 add BOMs and let delimiter bytes match across character boundaries.
            raise ValueError(
                f"encoding {encoding!r} is not ASCII-compatible for delimiter {delimiter!r}; "
                "lines are split on bytes, use e.g. utf-8 or latin-1"
            )
        self.host = host
        self.port = port
        self.delimiter = delimiter
        self.max_retry = _check_retries("max_retry", max_retry)
        self.retry_delay = _check_seconds("retry_delay", retry_delay, allow_zero=True)
        self.encoding = encoding
        self.connect_timeout = _check_seconds("connect_timeout", connect_timeout, allow_zero=False)

    def create_reader(self, ctx: ReaderContext) -> SourceReader[str]:
        return _SocketTextReader(self, ctx)

    def describe(self) -> str:
        return f"Socket Stream {_endpoint(self.host, self.port)}"


class _State(Enum):
    IDLE = "idle"  # no connection; start an attempt on the next step
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting retry_delay before the next attempt
    FINISHED = "finished"


class _Resolver:
    """getaddrinfo on a daemon thread: name lookups can block for seconds and cannot be
    interrupted, and poll must stay within max_poll_wait."""

    def __init__(self, host: str, port: int, notify: Callable[[], None]) -> None:
        self.done = threading.Event()
        self.result: list[_AddrInfo] = []
        self.error: BaseException | None = None
        threading.Thread(
            target=self._run,
            args=(host, port, notify),
            name=f"strom-socket-resolve-{host}",
            daemon=True,
        ).start()

    def _run(self, host: str, port: int, notify: Callable[[], None]) -> None:
        try:
            self.result = list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # UnicodeError for bad IDNA names, too; the reader reports it
            self.error = exc
        finally:
            self.done.set()
            notify()


class _SocketTextReader(SourceReader[str]):
    def __init__(self, source: SocketTextSource, ctx: ReaderContext) -> None:
        self._host = source.host
        self._port = source.port
        self._where = _endpoint(source.host, source.port)
        self._delim = source.delimiter.encode(source.encoding)
        self._strip_cr = source.delimiter == "\n"
        self._encoding = source.encoding
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
        self._addrs: list[_AddrInfo] = []
        self._resolver: _Resolver | None = None
        self._connect_deadline = 0.0
        self._retry_at = 0.0
        self._attempts = 0
        self._connections = 0
        self._last_error: BaseException | None = None
        self._last_error_dns = False

        self._buf = bytearray()
        self._scan = 0  # buf[:scan] holds no delimiter start; avoids rescanning long lines
        self._offset = 0  # byte offset of buf[0] within the current connection
        self._lines: deque[tuple[int, int, bytes]] = deque()  # (connection, offset, raw)

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
            self._lines.clear()
            self._buf.clear()
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
                if self._lines:
                    return self._take(max_records)
                if self._failure is not None:
                    raise self._failure
                if self._state is _State.FINISHED:
                    return None
                now = time.monotonic()
                wait = self._step(now)
                if self._lines or self._failure is not None or self._finished():
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
        lines, encoding = self._lines, self._encoding
        out: list[str] = []
        while lines and len(out) < max_records:
            connection, offset, raw = lines[0]
            try:
                out.append(raw.decode(encoding))
            except UnicodeDecodeError as exc:
                if out:
                    break  # hand out the good lines first; the bad one raises on the next poll
                lines.popleft()
                raise DeserializationError(
                    raw,
                    f"invalid {encoding} at byte {exc.start} of the line: {exc.reason}",
                    f"socket {self._where} (connection {connection}, line at byte offset {offset})",
                ) from exc
            lines.popleft()
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
            self._resolver = _Resolver(self._host, self._port, self._poke)
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
        self._buf.clear()
        self._scan = 0
        self._offset = 0
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
        if clean:
            # A FIN ends the byte stream, so an unterminated tail is a complete last line.
            if self._buf:
                self._emit(bytes(self._buf), self._offset)
        elif self._buf:
            # After a reset the tail is most likely a torn line; emitting it would pass on junk.
            log.warning(
                "socket source: connection to %s was reset; dropping %d bytes of an "
                "unterminated line",
                self._where,
                len(self._buf),
            )
        self._buf.clear()
        self._scan = 0
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
        read = 0
        while read < _MAX_READ_PER_STEP:
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._split()
                self._connection_ended(clean=False)
                return
            if not data:
                self._split()
                self._connection_ended(clean=True)
                return
            self._buf += data
            read += len(data)
        self._split()

    def _split(self) -> None:
        buf, delim = self._buf, self._delim
        start = 0
        pos = buf.find(delim, self._scan)
        while pos >= 0:
            self._emit(bytes(buf[start:pos]), self._offset + start)
            start = pos + len(delim)
            pos = buf.find(delim, start)
        if start:
            del buf[:start]
            self._offset += start
        # A delimiter may be cut across two reads: rescan its possible first bytes next time.
        self._scan = max(0, len(buf) - len(delim) + 1)

    def _emit(self, raw: bytes, offset: int) -> None:
        if self._strip_cr and raw.endswith(b"\r"):
            raw = raw[:-1]
        self._lines.append((self._connections, offset, raw))

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
