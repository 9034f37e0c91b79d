"""``CollectingServer``: the server end a socket *sink* writes to; records what arrived."""

from __future__ import annotations

import socket
from collections.abc import Callable

from strom.testing.network._tcp_server import TcpServer

__all__ = ["CollectingServer"]


class CollectingServer(TcpServer):
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
