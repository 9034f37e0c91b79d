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

Modules: ``fault_proxy``, ``line_server``, ``collecting_server``; the servers' shared base is
``_tcp_server``, socket plumbing (and ``free_port``) ``_sockets``.
"""

from strom.testing.network._sockets import free_port
from strom.testing.network.collecting_server import CollectingServer
from strom.testing.network.fault_proxy import FaultProxy
from strom.testing.network.line_server import LineServer

__all__ = ["CollectingServer", "FaultProxy", "LineServer", "free_port"]
