from typing import Any

import pytest

from strom.errors import StateError
from strom.functions import AggregateFunction
from strom.runtime.keygroups import key_group_range
from strom.runtime.state import HeapKeyedStateBackend, OperatorStateBackend
from strom.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)


class Avg(AggregateFunction[int, tuple[int, int], float]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


def test_keyed_states_are_per_key() -> None:
    b = HeapKeyedStateBackend(128)
    value = b.get_state(ValueStateDescriptor[int]("v"))
    lst = b.get_list_state(ListStateDescriptor[int]("l"))
    mp = b.get_map_state(MapStateDescriptor[str, int]("m"))
    red = b.get_reducing_state(ReducingStateDescriptor("r", reduce_function=lambda a, c: a + c))
    agg = b.get_aggregating_state(AggregatingStateDescriptor("a", agg_function=Avg()))
    for key, n in (("x", 1), ("y", 10), ("x", 3)):
        b.set_current_key(key)
        value.update((value.value() or 0) + n)
        lst.add(n)
        mp.put(f"k{n}", n)
        red.add(n)
        agg.add(n)
    b.set_current_key("x")
    assert value.value() == 4
    assert lst.get() == [1, 3]
    assert dict(mp.items()) == {"k1": 1, "k3": 3}
    assert red.get() == 4
    assert agg.get() == 2.0
    b.set_current_key("y")
    assert (value.value(), lst.get(), red.get(), agg.get()) == (10, [10], 10, 10.0)
    value.clear()
    mp.remove("k10")
    assert value.value() is None
    assert mp.is_empty()
    b.set_current_key("z")
    assert (value.value(), lst.get(), red.get(), agg.get()) == (None, [], None, None)


def test_state_without_current_key_is_an_error() -> None:
    b = HeapKeyedStateBackend(128)
    with pytest.raises(StateError, match="no current key"):
        b.get_state(ValueStateDescriptor[int]("v")).value()


def test_same_name_different_kind_is_an_error() -> None:
    b = HeapKeyedStateBackend(128)
    b.get_state(ValueStateDescriptor[int]("s"))
    with pytest.raises(StateError, match="registered as value state"):
        b.get_list_state(ListStateDescriptor[int]("s"))


@pytest.mark.parametrize(("old", "new"), [(1, 4), (4, 2), (3, 3), (2, 5)])
def test_keyed_snapshot_restores_at_any_parallelism(old: int, new: int) -> None:
    maxp = 128
    desc = ValueStateDescriptor[int]("count")
    keys = [f"key-{i}" for i in range(300)]
    # old job: each key lives on the subtask owning its key group
    olds = [HeapKeyedStateBackend(maxp, key_group_range(s, maxp, old)) for s in range(old)]
    from strom.runtime.keygroups import key_group_of, subtask_for_key_group

    for i, k in enumerate(keys):
        b = olds[subtask_for_key_group(key_group_of(k, maxp), maxp, old)]
        b.set_current_key(k)
        b.get_state(desc).update(i)
    snaps = [b.snapshot() for b in olds]
    restored: dict[Any, int] = {}
    for s in range(new):
        b = HeapKeyedStateBackend(maxp)
        b.restore(snaps, key_group_range(s, maxp, new))
        for k, v in b.tables.get("count", {}).items():
            assert k not in restored, "a key must be restored on exactly one subtask"
            assert subtask_for_key_group(key_group_of(k, maxp), maxp, new) == s
            restored[k] = v
    assert restored == {k: i for i, k in enumerate(keys)}


def test_operator_list_state_is_dealt_round_robin_and_union_goes_to_all() -> None:
    olds = []
    for s in range(2):
        b = OperatorStateBackend()
        b.get_list_state(ListStateDescriptor[int]("offsets")).add_all(
            [s * 10 + i for i in range(3)]
        )
        b.get_union_list_state(ListStateDescriptor[str]("u")).add(f"s{s}")
        olds.append(b.snapshot())
    news = []
    for s in range(3):
        b = OperatorStateBackend()
        b.restore(olds, s, 3)
        news.append(b)
    lists = [n.get_list_state(ListStateDescriptor[int]("offsets")).get() for n in news]
    assert sorted(x for lst in lists for x in lst) == [0, 1, 2, 10, 11, 12]
    assert all(len(lst) == 2 for lst in lists)
    for n in news:
        assert n.restored
        assert n.get_union_list_state(ListStateDescriptor[str]("u")).get() == ["s0", "s1"]


def test_broadcast_state_is_copied_to_every_subtask_on_restore() -> None:
    desc = MapStateDescriptor[str, str]("rules")
    olds = []
    for _ in range(2):
        b = OperatorStateBackend()
        b.get_broadcast_state(desc).put_all({"r1": "select", "r2": "filter"})
        olds.append(b.snapshot())
    for s in range(3):
        b = OperatorStateBackend()
        b.restore(olds, s, 3)
        assert dict(b.get_broadcast_state(desc).items()) == {"r1": "select", "r2": "filter"}
