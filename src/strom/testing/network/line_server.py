"""``LineServer``: the server end a socket *source* reads lines from."""

from __future__ import annotations

from collections.abc import Iterable

from strom.testing.network._tcp_server import TcpServer

__all__ = ["LineServer"]


class LineServer(TcpServer):
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
