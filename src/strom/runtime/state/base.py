"""What every keyed state object shares: the table it works on and the current key.

A *table* is the ``MutableMapping`` ``{key: value}`` of one state name: a plain ``dict`` on the
heap backend, a cached view of an on-disk store on the disk backend. State objects only use
the mapping protocol, which is why both backends share them and behave the same.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from strom.errors import StateError

NO_KEY: Any = object()
"""The backend's current key before any key was set."""


class KeyContext(Protocol):
    """The part of a keyed backend that state objects read."""

    current_key: Any
    clock: Callable[[], int]


class KeyedStateBase:
    def __init__(self, backend: KeyContext, table: MutableMapping[Any, Any]) -> None:
        self._backend = backend
        self._table = table

    def _key(self) -> Any:
        key = self._backend.current_key
        if key is NO_KEY:
            raise StateError("keyed state used outside of a keyed context (no current key)")
        return key

    def clear(self) -> None:
        self._table.pop(self._key(), None)
