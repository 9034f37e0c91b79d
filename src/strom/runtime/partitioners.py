"""How a batch is split among the subtasks of the next task (Flink's partitioners).

``split(values, timestamps)`` returns ``(channel, values, timestamps)`` parts; channels are the
downstream subtask indices. Per-record work is done only where the partitioning needs it (hash,
shuffle, custom); forward and rebalance move whole slices.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from strom.runtime.keygroups import channel_table, stable_hash

Part = tuple[int, list[Any], list[int] | None]


class Partitioner(ABC):
    name = "partitioner"
    all_channels = False
    """True when every channel receives every record (broadcast)."""

    def setup(self, num_channels: int, subtask_index: int) -> None:
        self.num_channels = num_channels
        self.subtask_index = subtask_index

    @abstractmethod
    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]: ...


def _group(chans: list[int], values: list[Any], timestamps: list[int] | None, n: int) -> list[Part]:
    outs: list[list[Any]] = [[] for _ in range(n)]
    if timestamps is None:
        for c, v in zip(chans, values, strict=True):
            outs[c].append(v)
        return [(c, vs, None) for c, vs in enumerate(outs) if vs]
    touts: list[list[int]] = [[] for _ in range(n)]
    for c, v, t in zip(chans, values, timestamps, strict=True):
        outs[c].append(v)
        touts[c].append(t)
    return [(c, vs, touts[c]) for c, vs in enumerate(outs) if vs]


class ForwardPartitioner(Partitioner):
    """Subtask *i* to subtask *i* (equal parallelism)."""

    name = "forward"

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        return [(self.subtask_index, values, timestamps)]


class GlobalPartitioner(Partitioner):
    """Everything to subtask 0."""

    name = "global"

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        return [(0, values, timestamps)]


class RebalancePartitioner(Partitioner):
    """Round-robin: each batch is cut into equal slices, the starting channel rotates."""

    name = "rebalance"

    def setup(self, num_channels: int, subtask_index: int) -> None:
        super().setup(num_channels, subtask_index)
        self._next = subtask_index % num_channels

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        n = self.num_channels
        size = len(values)
        start = self._next
        self._next = (start + size) % n
        if n == 1:
            return [(0, values, timestamps)]
        parts: list[Part] = []
        for i in range(min(n, size)):
            # record j goes to channel (start + j) % n: a stride slice keeps that exact rotation.
            ch = (start + i) % n
            vs = values[i::n]
            ts = timestamps[i::n] if timestamps is not None else None
            parts.append((ch, vs, ts))
        return parts


class ShufflePartitioner(Partitioner):
    """Each record to a uniformly random channel."""

    name = "shuffle"

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        n = self.num_channels
        if n == 1:
            return [(0, values, timestamps)]
        rnd = self._rng.randrange
        return _group([rnd(n) for _ in values], values, timestamps, n)


class BroadcastPartitioner(Partitioner):
    """Every record to every channel."""

    name = "broadcast"
    all_channels = True

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        return [(c, values, timestamps) for c in range(self.num_channels)]


class KeyGroupPartitioner(Partitioner):
    """``key_by``: a record goes to the subtask that owns its key's key group."""

    name = "hash"

    def __init__(self, key_selector: Callable[[Any], Any], max_parallelism: int) -> None:
        self.key_selector = key_selector
        self.max_parallelism = max_parallelism

    def setup(self, num_channels: int, subtask_index: int) -> None:
        super().setup(num_channels, subtask_index)
        self._table = channel_table(self.max_parallelism, num_channels)

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        n = self.num_channels
        if n == 1:
            return [(0, values, timestamps)]
        key, table, maxp, h = self.key_selector, self._table, self.max_parallelism, stable_hash
        return _group([table[h(key(v)) % maxp] for v in values], values, timestamps, n)


class CustomPartitioner(Partitioner):
    """``partition_custom(partitioner, key_selector)``: the user picks the channel per key."""

    name = "custom"

    def __init__(
        self, partitioner: Callable[[Any, int], int], key_selector: Callable[[Any], Any]
    ) -> None:
        self.partitioner = partitioner
        self.key_selector = key_selector

    def split(self, values: list[Any], timestamps: list[int] | None) -> list[Part]:
        n = self.num_channels
        p, key = self.partitioner, self.key_selector
        chans = [p(key(v), n) for v in values]
        for c, v in zip(chans, values, strict=True):
            if not (isinstance(c, int) and 0 <= c < n):
                raise ValueError(
                    f"custom partitioner returned {c!r} for record {v!r:.80}; "
                    f"it must return an int in [0, {n})"
                )
        return _group(chans, values, timestamps, n)
