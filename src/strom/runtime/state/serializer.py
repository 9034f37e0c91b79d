"""How state becomes bytes: the pluggable ``StateSerializer``.

Checkpoints and savepoints write each task's snapshot through the job's serializer (named in the
checkpoint's metadata, so a restore with another serializer fails clearly); the disk backend
also stores every value through it. The heap backend keeps Python objects in memory. The
default, ``PickleSerializer``, handles arbitrary picklable Python values. A custom serializer (a
schema codec, msgpack, ...) only needs ``dumps``/``loads``.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["PickleSerializer", "StateSerializer", "default_serializer"]


@runtime_checkable
class StateSerializer(Protocol):
    """Turns one state value into bytes and back; ``loads(dumps(v)) == v``."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class PickleSerializer:
    """Pickle protocol 5: any picklable value, fast for built-in types.

    Trust model as for checkpoints: state files are only ever read by the process that wrote
    them, so unpickling them runs no foreign code.
    """

    def __init__(self, protocol: int = 5) -> None:
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, self.protocol)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


def default_serializer() -> StateSerializer:
    return PickleSerializer()
