"""Key groups: the unit in which keyed state is partitioned and redistributed.

A key belongs to key group ``murmur(stable_hash(key)) % max_parallelism``; key group ``g`` runs
on subtask ``g * parallelism // max_parallelism`` (Flink's formula), so each subtask owns a
contiguous range and a job restores at another parallelism by key-group ranges.

``stable_hash`` must give the same value in every process and run (Python's ``hash`` of ``str``
is salted per process), because key groups are stored in checkpoints.
"""

from __future__ import annotations

import pickle
import struct
from enum import Enum
from typing import Any
from zlib import crc32

DEFAULT_MAX_PARALLELISM = 128
_MASK = 0xFFFFFFFF


def _mix(h: int) -> int:
    # murmur3's 32-bit finaliser: spreads sequential ints and crc values over all key groups.
    h &= _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def stable_hash(key: Any) -> int:
    """A 32-bit hash of ``key`` that is identical in every Python process."""
    t = type(key)
    if t is str:
        return _mix(crc32(key.encode("utf-8", "surrogatepass")))
    if t is int or t is bool:
        return _mix(key ^ (key >> 32))
    if t is bytes:
        return _mix(crc32(key))
    if t is float:
        return _mix(crc32(struct.pack("<d", key)))
    if key is None:
        return 0
    if isinstance(key, tuple):
        h = 17
        for part in key:
            h = (h * 31 + stable_hash(part)) & _MASK
        return _mix(h)
    if isinstance(key, Enum):
        return stable_hash(key.value)
    if isinstance(key, str | int | bytes):  # subclasses
        return stable_hash(_base_value(key))
    return _mix(crc32(pickle.dumps(key, protocol=5)))


def _base_value(key: str | int | bytes) -> str | int | bytes:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, int):
        return int(key)
    return bytes(key)


def key_group_of(key: Any, max_parallelism: int) -> int:
    return stable_hash(key) % max_parallelism


def subtask_for_key_group(key_group: int, max_parallelism: int, parallelism: int) -> int:
    return key_group * parallelism // max_parallelism


def key_group_range(subtask: int, max_parallelism: int, parallelism: int) -> range:
    """The key groups subtask ``subtask`` owns: the inverse of ``subtask_for_key_group``."""
    start = (subtask * max_parallelism + parallelism - 1) // parallelism
    end = ((subtask + 1) * max_parallelism + parallelism - 1) // parallelism
    return range(start, end)


def channel_table(max_parallelism: int, parallelism: int) -> list[int]:
    """``table[key_group]`` is the subtask of that key group; precomputed for the hot path."""
    return [subtask_for_key_group(g, max_parallelism, parallelism) for g in range(max_parallelism)]
