import os
import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from strom.runtime.keygroups import (
    channel_table,
    key_group_of,
    key_group_range,
    stable_hash,
    subtask_for_key_group,
)

KEYS = ["api", "/api/orders", "", "ü", 0, 1, -5, 2**40, 3.5, b"raw", ("a", 1), None, True]


def test_stable_hash_is_identical_across_processes_with_different_hash_seeds() -> None:
    code = (
        f"from strom.runtime.keygroups import stable_hash;print([stable_hash(k) for k in {KEYS!r}])"
    )
    outs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(res.stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == str([stable_hash(k) for k in KEYS])


def test_stable_hash_spreads_keys_over_key_groups() -> None:
    groups = Counter(key_group_of(f"user-{i}", 128) for i in range(12_800))
    assert len(groups) == 128
    assert max(groups.values()) < 2.5 * 100
    int_groups = Counter(key_group_of(i, 128) for i in range(12_800))
    assert len(int_groups) == 128


def test_equal_keys_of_different_shapes() -> None:
    class S(str):
        pass

    assert stable_hash(S("abc")) == stable_hash("abc")
    assert stable_hash(("a", 1)) != stable_hash(("a", 2))


@given(st.integers(1, 64), st.integers(0, 10_000))
def test_key_group_ranges_partition_all_groups(parallelism: int, extra: int) -> None:
    maxp = max(parallelism, 128 + extra % 200)
    seen: list[int] = []
    for s in range(parallelism):
        r = key_group_range(s, maxp, parallelism)
        for g in r:
            assert subtask_for_key_group(g, maxp, parallelism) == s
        seen.extend(r)
    assert seen == list(range(maxp))


def test_channel_table_matches_formula() -> None:
    table = channel_table(128, 3)
    assert table == [g * 3 // 128 for g in range(128)]
