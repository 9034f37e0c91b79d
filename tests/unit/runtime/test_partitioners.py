from collections import Counter
from typing import Any

import pytest

from strom.runtime.keygroups import key_group_of, subtask_for_key_group
from strom.runtime.partitioners import (
    BroadcastPartitioner,
    CustomPartitioner,
    ForwardPartitioner,
    KeyGroupPartitioner,
    Partitioner,
    RebalancePartitioner,
    ShufflePartitioner,
)


def _setup(p: Partitioner, n: int, subtask: int = 0) -> Partitioner:
    p.setup(n, subtask)
    return p


def test_forward_keeps_subtask_index() -> None:
    p = _setup(ForwardPartitioner(), 4, 2)
    assert p.split([1, 2], [10, 20]) == [(2, [1, 2], [10, 20])]


def test_rebalance_is_round_robin_across_batches() -> None:
    p = _setup(RebalancePartitioner(), 3, 0)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    values = list(range(10))
    for batch in (values[:4], values[4:5], values[5:]):
        for ch, vs, ts in p.split(batch, None):
            assert ts is None
            seen[ch].extend(vs)
    # record j overall goes to channel j % 3, exactly like a per-record round robin
    assert seen == {c: [v for v in values if v % 3 == c] for c in range(3)}


def test_rebalance_keeps_timestamps_aligned() -> None:
    p = _setup(RebalancePartitioner(), 2, 0)
    parts = p.split(["a", "b", "c"], [1, 2, 3])
    assert sorted(parts) == [(0, ["a", "c"], [1, 3]), (1, ["b"], [2])]


def test_hash_routes_to_owner_of_key_group() -> None:
    p = _setup(KeyGroupPartitioner(lambda r: r[0], 128), 4)
    records = [(f"k{i}", i) for i in range(200)]
    for ch, vs, _ in p.split(records, None):
        for k, _v in vs:
            assert subtask_for_key_group(key_group_of(k, 128), 128, 4) == ch


def test_broadcast_sends_everything_everywhere() -> None:
    p = _setup(BroadcastPartitioner(), 3)
    assert [c for c, vs, _ in p.split([1, 2], None) if vs == [1, 2]] == [0, 1, 2]


def test_shuffle_uses_all_channels() -> None:
    p = _setup(ShufflePartitioner(seed=7), 4)
    counts: Counter[int] = Counter()
    for ch, vs, _ in p.split(list(range(4000)), None):
        counts[ch] += len(vs)
    assert set(counts) == {0, 1, 2, 3}
    assert sum(counts.values()) == 4000


def test_custom_partitioner_validates_result() -> None:
    def bad(key: Any, n: int) -> int:
        return n

    p = _setup(CustomPartitioner(bad, lambda x: x), 2)
    with pytest.raises(ValueError, match=r"custom partitioner returned 2 for record 5"):
        p.split([5], None)
    good = _setup(CustomPartitioner(lambda k, n: k % n, lambda x: x), 2)
    assert sorted(good.split([1, 2, 3], None)) == [(0, [2], None), (1, [1, 3], None)]
