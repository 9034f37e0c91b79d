"""State backends: where keyed and operator state of one operator subtask lives.

``HeapKeyedStateBackend`` keeps each keyed state as a plain dict ``{key: value}`` (the fastest
thing Python has); snapshots group the entries by key group so a job can restore at another
parallelism. ``DiskKeyedStateBackend`` (``strom.runtime.state.disk``, imported on demand as it
needs ``lmdb``) keeps keyed state on disk behind a cache, with the same semantics and snapshot
format; ``create_keyed_backend`` picks one by name. ``OperatorStateBackend`` holds list and
union-list states. TTL (``strom.runtime.state.ttl``) works the same on both keyed backends.
"""

from strom.runtime.state.factory import (
    STATE_BACKENDS,
    check_state_backend,
    create_keyed_backend,
)
from strom.runtime.state.heap import HeapKeyedStateBackend
from strom.runtime.state.operator import OperatorStateBackend
from strom.runtime.state.serializer import PickleSerializer, StateSerializer
from strom.runtime.state.ttl import TtlValue

__all__ = [
    "STATE_BACKENDS",
    "HeapKeyedStateBackend",
    "OperatorStateBackend",
    "PickleSerializer",
    "StateSerializer",
    "TtlValue",
    "check_state_backend",
    "create_keyed_backend",
]
