"""Socket plumbing shared by the network helpers: time bounds, listening, closing with a
reset, and ``free_port``."""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
from types import TracebackType
from typing import Self

__all__ = [
    "CHUNK",
    "CONNECT_TIMEOUT",
    "IN_PROGRESS",
    "JOIN_TIMEOUT",
    "POLL",
    "SEND_TIMEOUT",
    "Listening",
    "close_socket",
    "free_port",
    "listen",
    "nodelay",
]

# Every blocking call made by a helper thread is bounded by this, so that stop(), cut() and
# stall() take effect within about this long without closing sockets under another thread's feet.
POLL = 0.05
JOIN_TIMEOUT = 2.0
CONNECT_TIMEOUT = 5.0
# Bounds how long a test thread can hang in send_lines() on a client that stopped reading.
SEND_TIMEOUT = 5.0
CHUNK = 65536
IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller uses it; good enough for pointing a client at a
    port where nothing listens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=family(host), backlog=128)


def close_socket(sock: socket.socket, *, reset: bool = False) -> None:
    if reset and sock.fileno() != -1:
        # Linger on with a zero timeout makes close() send RST instead of FIN, so the peer sees
        # "connection reset" at once, as after a crash or a middlebox dropping state.
        linger = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
    sock.close()


def nodelay(sock: socket.socket) -> None:
    # Small test messages must not sit in Nagle's buffer waiting for an ACK: that adds delays the
    # test did not ask for.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class Listening:
    """What every network helper with a listener and a thread shares: ``with`` starts and
    stops it, ``address`` and ``port`` say where it listens. Subclasses set ``_listener`` and
    ``_thread`` in ``start`` and define ``start`` and ``stop``."""

    _listener: socket.socket | None
    _thread: threading.Thread | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

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
        """``(host, port)`` it listens on: where clients connect."""
        if self._listener is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        name = self._listener.getsockname()
        return (name[0], name[1])

    @property
    def port(self) -> int:
        return self.address[1]
