"""Name resolution off the polling thread, for the socket source's reader."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["AddrInfo", "Resolver"]

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


class Resolver:
    """getaddrinfo on a daemon thread: name lookups can block for seconds and cannot be
    interrupted, and poll must stay within max_poll_wait."""

    def __init__(self, host: str, port: int, notify: Callable[[], None]) -> None:
        self.done = threading.Event()
        self.result: list[AddrInfo] = []
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
