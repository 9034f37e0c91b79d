"""State backends: where keyed and operator state of one operator subtask lives.

``HeapKeyedStateBackend`` keeps each keyed state as a plain dict ``{key: value}`` (the fastest
thing Python has); snapshots group the entries by key group so a job can restore at another
parallelism. ``OperatorStateBackend`` holds list and union-list states.
"""

from strom.runtime.state.heap import HeapKeyedStateBackend
from strom.runtime.state.operator import OperatorStateBackend

__all__ = ["HeapKeyedStateBackend", "OperatorStateBackend"]
