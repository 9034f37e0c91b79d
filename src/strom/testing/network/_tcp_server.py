"""``TcpServer``: what ``LineServer`` and ``CollectingServer`` share.

A listener and one selector thread that accepts clients and reads what they send; subclasses
react in ``_on_connect`` and ``_on_data``.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Self

from strom.testing.network._sockets import (
    CHUNK,
    JOIN_TIMEOUT,
    POLL,
    SEND_TIMEOUT,
    Listening,
    close_socket,
    listen,
    nodelay,
)

__all__ = ["TcpServer"]


class TcpServer(Listening):
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
        listener = listen(*self._listen_at)
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
        self._thread.join(JOIN_TIMEOUT)
        with self._cond:
            for client in list(self._clients):
                self._discard(client, reset=False)
            if self._selector is not None:
                self._selector.close()
            if self._listener is not None:
                self._listener.close()

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
            events = selector.select(POLL)
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
        client.settimeout(SEND_TIMEOUT)
        nodelay(client)
        self._clients.append(client)
        self._selector.register(client, selectors.EVENT_READ, client)
        self._connections_total += 1
        self._on_connect(client)
        self._cond.notify_all()

    def _read(self, client: socket.socket) -> None:
        try:
            data = client.recv(CHUNK)
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
            close_socket(client, reset=reset)
            self._cond.notify_all()

    def _close_all(self, *, reset: bool) -> int:
        with self._cond:
            clients = list(self._clients)
            for client in clients:
                self._discard(client, reset=reset)
            return len(clients)
