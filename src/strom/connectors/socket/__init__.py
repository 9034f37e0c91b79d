"""TCP socket connectors, as in Flink's ``socketTextStream`` and ``writeToSocket``.

* :class:`SocketTextSource` reads text lines from a server. Guarantee: at-most-once — a socket
  cannot be replayed, so lines in flight at a failure are lost.
* :class:`SocketSink` sends serialized records to a server. Guarantee: at-least-once — it sends
  on every checkpoint and resends the batch in flight after reconnecting, so that batch may
  arrive twice.
"""

from strom.connectors.socket.sink import SocketSink
from strom.connectors.socket.source import SocketTextSource

__all__ = ["SocketSink", "SocketTextSource"]
