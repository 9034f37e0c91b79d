"""One semantic suite for both keyed state backends (heap and disk), plus TTL and rescaling.

The disk backend runs with a tiny cache here, so every test also exercises eviction and
write-back; snapshots restore across backends (heap -> disk and disk -> heap) at another
parallelism, through pickle as a checkpoint does.
"""

from __future__ import annotations

import enum
import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strom import InvalidJobError, StreamExecutionEnvironment
from strom.errors import StateError
from strom.eventtime import Time
from strom.functions import AggregateFunction, ReduceFunction
from strom.runtime.keygroups import key_group_of, key_group_range, subtask_for_key_group
from strom.runtime.state import HeapKeyedStateBackend, TtlValue, create_keyed_backend
from strom.runtime.state.disk import DiskKeyedStateBackend, DiskTable
from strom.runtime.state.keycodec import decode_key, encode_key
from strom.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from strom.testing import ManualClock

MAXP = 128
BACKENDS = ["heap", "disk"]
Make = Callable[..., HeapKeyedStateBackend]


class Avg(AggregateFunction[int, tuple[int, int], float]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Sum(ReduceFunction[int]):
    def reduce(self, a: int, b: int) -> int:
        return a + b


class JsonSerializer:
    """A custom serializer: proves the disk backend never hands it strom's own wrappers."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000)


@pytest.fixture
def factory(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., HeapKeyedStateBackend]]:
    created: list[HeapKeyedStateBackend] = []

    def make(kind: str, key_groups: range | None = None, **kw: Any) -> HeapKeyedStateBackend:
        if kind == "disk":
            kw.setdefault("cache_size", 3)  # tiny: every test also exercises write-back
            kw.setdefault("directory", tmp_path / "state")
        b = create_keyed_backend(
            kind, MAXP, key_groups or range(MAXP), clock=kw.pop("clock", clock), **kw
        )
        created.append(b)
        return b

    yield make
    for b in created:
        b.close()


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, factory: Callable[..., HeapKeyedStateBackend]) -> Make:
    kind: str = request.param
    return lambda **kw: factory(kind, **kw)


def entries(backend: HeapKeyedStateBackend, name: str) -> dict[Any, Any]:
    table = backend.tables.get(name)
    return dict(table.items()) if table is not None else {}


# -- semantics ----------------------------------------------------------------------------------
def test_every_state_kind_is_per_key(make: Make) -> None:
    b = make()
    value = b.get_state(ValueStateDescriptor[int]("v"))
    lst = b.get_list_state(ListStateDescriptor[int]("l"))
    mp = b.get_map_state(MapStateDescriptor[str, int]("m"))
    red: ReducingState[int] = b.get_reducing_state(
        ReducingStateDescriptor("r", reduce_function=Sum())
    )
    agg: AggregatingState[int, float] = b.get_aggregating_state(
        AggregatingStateDescriptor("a", agg_function=Avg())
    )
    for i in range(200):  # many keys: far beyond the disk backend's cache
        key, n = f"k{i % 20}", i
        b.set_current_key(key)
        value.update((value.value() or 0) + n)
        lst.add(n)
        mp.put(f"m{n % 3}", (mp.get(f"m{n % 3}") or 0) + 1)
        red.add(n)
        agg.add(n)
    for k in range(20):
        b.set_current_key(f"k{k}")
        ns = list(range(k, 200, 20))
        assert value.value() == sum(ns)
        assert lst.get() == ns
        assert list(lst) == ns
        assert sum(v for _, v in mp.items()) == 10
        assert red.get() == sum(ns)
        assert agg.get() == sum(ns) / 10
    b.set_current_key("nobody")
    assert (value.value(), lst.get(), red.get(), agg.get()) == (None, [], None, None)
    assert mp.is_empty()
    assert mp.get("m0") is None
    assert not mp.contains("m0")


def test_updates_removals_and_clear(make: Make) -> None:
    b = make()
    value = b.get_state(ValueStateDescriptor[list[int]]("v"))
    lst = b.get_list_state(ListStateDescriptor[int]("l"))
    mp = b.get_map_state(MapStateDescriptor[str, int]("m"))
    red: ReducingState[int] = b.get_reducing_state(
        ReducingStateDescriptor("r", reduce_function=lambda a, c: a + c)
    )
    agg: AggregatingState[int, float] = b.get_aggregating_state(
        AggregatingStateDescriptor("a", agg_function=Avg())
    )
    b.set_current_key(("user", 1))
    value.update([1, 2])
    lst.update([3, 4])
    lst.add_all([5, 6])
    mp.put_all({"x": 1, "y": 2, "z": 3})
    mp.remove("y")
    mp.remove("missing")
    red.add(5)
    agg.add(4)
    for i in range(10):  # other keys push ("user", 1) out of the disk cache
        b.set_current_key(i)
        value.update([i])
    b.set_current_key(("user", 1))
    assert value.value() == [1, 2]
    assert lst.get() == [3, 4, 5, 6]
    assert dict(mp.items()) == {"x": 1, "z": 3}
    assert sorted(mp.keys()) == ["x", "z"]
    assert sorted(mp.values()) == [1, 3]
    assert mp.contains("x")
    for state in (value, lst, mp, red, agg):
        state.clear()
    assert (value.value(), lst.get(), red.get(), agg.get()) == (None, [], None, None)
    assert mp.is_empty()
    value.update([7])
    value.update(None)  # None clears, as in Flink
    assert value.value() is None
    lst.update([])
    assert lst.get() == []
    for name in ("v", "l", "m", "r", "a"):
        assert ("user", 1) not in entries(b, name)


def test_in_place_changes_of_read_values_persist(make: Make) -> None:
    """The heap keeps the object, so mutating a read value changes state; the disk backend
    writes mutable values back whenever they leave its cache, so it agrees."""
    b = make()
    value = b.get_state(ValueStateDescriptor[dict[str, int]]("v"))
    b.set_current_key("a")
    value.update({"n": 1})
    v = value.value()
    assert v is not None
    v["n"] = 2
    for i in range(10):
        b.set_current_key(i)
        value.update({"n": i})
    b.set_current_key("a")
    assert value.value() == {"n": 2}


def test_current_key(make: Make) -> None:
    b = make()
    state = b.get_state(ValueStateDescriptor[int]("v"))
    assert b.get_current_key() is None
    with pytest.raises(StateError, match="no current key"):
        state.value()
    b.set_current_key("k")
    assert b.get_current_key() == "k"
    b.set_current_key(None)  # None is a key like any other
    state.update(1)
    assert b.get_current_key() is None
    assert state.value() == 1


def test_same_name_must_keep_its_kind_and_ttl(make: Make) -> None:
    b = make()
    b.get_state(ValueStateDescriptor[int]("s"))
    with pytest.raises(StateError, match="registered as value state"):
        b.get_list_state(ListStateDescriptor[int]("s"))
    ttl = ValueStateDescriptor[int]("s")
    ttl.enable_time_to_live(StateTtlConfig(1000))
    with pytest.raises(StateError, match="without a TTL"):
        b.get_state(ttl)


def test_table_fast_path_is_a_mapping(make: Make) -> None:
    """What KeyedReduceOperator uses: ``table(descriptor)`` and plain mapping operations."""
    b = make()
    table = b.table(ValueStateDescriptor[Any]("_reduce"))
    for i in range(100):
        table[f"k{i % 30}"] = table.get(f"k{i % 30}", 0) + i
    assert table.get("k3") == sum(range(3, 100, 30))
    assert "k3" in table
    assert "nope" not in table
    assert table.setdefault("new", 5) == 5
    assert table.setdefault("new", 6) == 5
    assert table.pop("new") == 5
    assert table.pop("new", None) is None
    with pytest.raises(KeyError):
        del table["new"]
    with pytest.raises(KeyError):
        table["new"]
    assert len(table) == 30
    assert set(table) == {f"k{i}" for i in range(30)}
    assert b.table(ValueStateDescriptor[Any]("_reduce")) is table


@dataclass(frozen=True)
class Point:
    x: int
    y: str


class Color(enum.Enum):
    RED = "red"


def test_keys_of_every_common_type_meet_their_equals(make: Make) -> None:
    b = make()
    state = b.get_state(ValueStateDescriptor[str]("v"))
    joined = "".join(["a", "b"])  # equal to "ab" but another object (pickle's memo differs)
    keys: list[tuple[Any, Any]] = [
        (1, 1.0),
        (True, 1),
        (("ab", "ab"), ("ab", joined)),
        (frozenset({"x", "y", "z"}), frozenset(["z", "y", "x"])),
        (Point(1, "ab"), Point(1, joined)),
        (Color.RED, Color("red")),
        (None, None),
        (b"raw", b"raw"),
        (2.5, 2.5),
        (("nested", (1, "x"), None), ("nested", (1.0, "x"), None)),
        ("x" * 2000, "x" * 2000),  # longer than LMDB's key limit
        ("ünï\udcff", "ünï\udcff"),
        (-(2**80), -(2**80)),
    ]
    for i, (a, _) in enumerate(keys):
        b.set_current_key(a)
        state.update(f"v{i}")
    for i in range(20):  # push everything out of the disk cache
        b.set_current_key(f"filler{i}")
        state.update("x")
    for i, (a, equal) in enumerate(keys):
        expected = "v1" if a == 1 else f"v{i}"  # 1, 1.0 and True are one key
        b.set_current_key(equal)
        assert state.value() == expected, (a, equal)
    restored = entries(b, "v")
    assert restored["x" * 2000] == "v10"
    assert restored[Point(1, "ab")] == "v4"


def test_key_codec_round_trips() -> None:
    for key in ["s", 7, -3, b"b", None, 2.5, ("t", (1, b"")), frozenset({1, 2}), Point(1, "a")]:
        assert decode_key(encode_key(key)) == key
    assert encode_key(True) == encode_key(1) == encode_key(1.0)
    assert encode_key(("a", "a")) == encode_key(("a", "".join(["a"])))


# -- snapshots and rescaling --------------------------------------------------------------------
def fill(backends: list[HeapKeyedStateBackend], parallelism: int, keys: list[str]) -> None:
    for i, k in enumerate(keys):
        b = backends[subtask_for_key_group(key_group_of(k, MAXP), MAXP, parallelism)]
        b.set_current_key(k)
        b.get_state(ValueStateDescriptor[int]("count")).update(i)
        b.get_list_state(ListStateDescriptor[str]("seen")).add_all([k, k.upper()])
        b.get_map_state(MapStateDescriptor[str, int]("m")).put("i", i)


@pytest.mark.parametrize("src", BACKENDS)
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize(("old", "new"), [(1, 4), (4, 2)])
@pytest.mark.parametrize("pickled", [True, False])
def test_snapshots_restore_across_backends_and_parallelism(
    factory: Callable[..., HeapKeyedStateBackend],
    src: str,
    dst: str,
    old: int,
    new: int,
    pickled: bool,
) -> None:
    keys = [f"key-{i}" for i in range(300)]
    olds = [factory(src, key_group_range(s, MAXP, old)) for s in range(old)]
    fill(olds, old, keys)
    snaps = [b.snapshot() for b in olds]
    if pickled:  # what a checkpoint does: the snapshot pickles to plain dicts
        snaps = [pickle.loads(pickle.dumps({"keyed": s}, protocol=5))["keyed"] for s in snaps]
        assert all(type(t) is dict for s in snaps for t in s["tables"].values())
    restored: dict[str, tuple[Any, ...]] = {}
    for s in range(new):
        owned = key_group_range(s, MAXP, new)
        b = factory(dst, owned)
        b.restore(snaps, owned)
        counts = entries(b, "count")
        assert entries(b, "seen").keys() == counts.keys() == entries(b, "m").keys()
        for k, v in counts.items():
            assert k not in restored, "a key must be restored on exactly one subtask"
            assert subtask_for_key_group(key_group_of(k, MAXP), MAXP, new) == s
            b.set_current_key(k)
            restored[k] = (
                v,
                b.get_list_state(ListStateDescriptor[str]("seen")).get(),
                b.get_map_state(MapStateDescriptor[str, int]("m")).get("i"),
            )
    assert restored == {k: (i, [k, k.upper()], i) for i, k in enumerate(keys)}


# -- TTL ----------------------------------------------------------------------------------------
UpdateType = StateTtlConfig.UpdateType
Visibility = StateTtlConfig.StateVisibility


def ttl_config(
    update: StateTtlConfig.UpdateType = UpdateType.OnCreateAndWrite,
    visibility: StateTtlConfig.StateVisibility = Visibility.NeverReturnExpired,
) -> StateTtlConfig:
    return (
        StateTtlConfig.new_builder(Time.seconds(1))
        .set_update_type(update)
        .set_state_visibility(visibility)
        .cleanup_full_snapshot()
        .build()
    )


def with_ttl(descriptor: Any, config: StateTtlConfig) -> Any:
    descriptor.enable_time_to_live(config)
    return descriptor


def test_ttl_config_builder_and_validation() -> None:
    c = ttl_config(UpdateType.OnReadAndWrite, Visibility.ReturnExpiredIfNotCleanedUp)
    assert c.get_ttl().to_milliseconds() == c.ttl_ms == 1000
    assert c.get_update_type() is UpdateType.OnReadAndWrite
    assert c.get_state_visibility() is Visibility.ReturnExpiredIfNotCleanedUp
    assert c.is_enabled()
    assert StateTtlConfig(500) == StateTtlConfig.new_builder(500).build()
    with pytest.raises(ValueError, match="must be positive"):
        StateTtlConfig(0)
    with pytest.raises(TypeError, match="Duration or an int"):
        StateTtlConfig(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="StateTtlConfig"):
        ValueStateDescriptor[int]("v").enable_time_to_live(1000)  # type: ignore[arg-type]
    d = with_ttl(ValueStateDescriptor[int]("v"), c)
    assert d.ttl_config is c
    assert d == ValueStateDescriptor[int]("v")  # TTL is not part of a descriptor's identity


@pytest.mark.parametrize("update", [UpdateType.OnCreateAndWrite, UpdateType.OnReadAndWrite])
@pytest.mark.parametrize(
    "visibility", [Visibility.NeverReturnExpired, Visibility.ReturnExpiredIfNotCleanedUp]
)
def test_ttl_value_like_states(
    make: Make,
    clock: ManualClock,
    update: StateTtlConfig.UpdateType,
    visibility: StateTtlConfig.StateVisibility,
) -> None:
    cfg = ttl_config(update, visibility)
    b = make()
    value = b.get_state(with_ttl(ValueStateDescriptor[int]("v"), cfg))
    red = b.get_reducing_state(with_ttl(ReducingStateDescriptor("r", reduce_function=Sum()), cfg))
    agg = b.get_aggregating_state(
        with_ttl(AggregatingStateDescriptor("a", agg_function=Avg()), cfg)
    )
    on_read = update is UpdateType.OnReadAndWrite
    return_expired = visibility is Visibility.ReturnExpiredIfNotCleanedUp
    b.set_current_key("k")
    value.update(1)
    red.add(2)
    agg.add(4)
    clock.advance(999)  # 1 ms before expiry: visible (and, on read, refreshed)
    assert (value.value(), red.get(), agg.get()) == (1, 2, 4.0)
    clock.advance(1)  # written 1000 ms ago: expired unless the read refreshed it
    if on_read:
        assert (value.value(), red.get(), agg.get()) == (1, 2, 4.0)
        clock.advance(1000)
    if return_expired:  # returned once, then cleaned up
        assert (value.value(), red.get(), agg.get()) == (1, 2, 4.0)
    assert (value.value(), red.get(), agg.get()) == (None, None, None)
    # adding to an expired accumulator starts afresh (or folds it in, if expired is visible)
    red.add(2)
    agg.add(4)
    clock.advance(1000)
    red.add(3)
    agg.add(8)
    assert red.get() == (5 if return_expired else 3)
    assert agg.get() == (6.0 if return_expired else 8.0)


@pytest.mark.parametrize("update", [UpdateType.OnCreateAndWrite, UpdateType.OnReadAndWrite])
@pytest.mark.parametrize(
    "visibility", [Visibility.NeverReturnExpired, Visibility.ReturnExpiredIfNotCleanedUp]
)
def test_ttl_list_and_map_expire_per_element(
    make: Make,
    clock: ManualClock,
    update: StateTtlConfig.UpdateType,
    visibility: StateTtlConfig.StateVisibility,
) -> None:
    cfg = ttl_config(update, visibility)
    b = make()
    lst = b.get_list_state(with_ttl(ListStateDescriptor[str]("l"), cfg))
    mp = b.get_map_state(with_ttl(MapStateDescriptor[str, int]("m"), cfg))
    return_expired = visibility is Visibility.ReturnExpiredIfNotCleanedUp
    b.set_current_key("k")
    lst.add("old")
    mp.put("old", 1)
    clock.advance(600)
    lst.add_all(["new"])
    mp.put_all({"new": 2})
    clock.advance(400)  # "old" expired, "new" has 600 ms left
    if return_expired:
        assert lst.get() == ["old", "new"]
        assert dict(mp.items()) == {"old": 1, "new": 2}
    assert lst.get() == ["new"]
    assert dict(mp.items()) == {"new": 2}
    assert mp.get("old") is None
    assert not mp.contains("old")
    clock.advance(599)
    assert mp.contains("new")  # a read: refreshes "new" with OnReadAndWrite
    assert lst.get() == ["new"]
    clock.advance(1)
    if update is UpdateType.OnReadAndWrite:
        assert lst.get() == ["new"]
        assert mp.get("new") == 2
        clock.advance(1000)
    if return_expired:
        assert mp.get("new") == 2
    assert mp.get("new") is None
    assert lst.get() == (["new"] if return_expired else [])
    assert lst.get() == []
    assert mp.is_empty()
    assert entries(b, "l") == entries(b, "m") == {}  # cleaned up, not just hidden
    lst.update(["a", "b"])
    assert lst.get() == ["a", "b"]


def test_ttl_disabled_update_type_means_no_ttl(make: Make, clock: ManualClock) -> None:
    b = make()
    value = b.get_state(with_ttl(ValueStateDescriptor[int]("v"), ttl_config(UpdateType.Disabled)))
    b.set_current_key("k")
    value.update(1)
    clock.advance(10_000)
    assert value.value() == 1


def test_expired_entries_never_reach_a_snapshot(make: Make, clock: ManualClock) -> None:
    cfg = ttl_config()
    b = make()
    states = (
        b.get_state(with_ttl(ValueStateDescriptor[int]("v"), cfg)),
        b.get_list_state(with_ttl(ListStateDescriptor[int]("l"), cfg)),
        b.get_map_state(with_ttl(MapStateDescriptor[int, int]("m"), cfg)),
    )
    for i in range(20):
        b.set_current_key(i)
        if i == 10:
            clock.advance(500)  # keys >= 10 outlive keys < 10 by 500 ms
        states[0].update(i)
        states[1].add(i)
        states[2].put(i, i)
    clock.advance(600)
    snap = pickle.loads(pickle.dumps(b.snapshot(), protocol=5))
    assert sorted(snap["tables"]["v"]) == list(range(10, 20))
    assert snap["tables"]["v"][15] == TtlValue(15, 1_500)
    assert sorted(snap["tables"]["l"]) == sorted(snap["tables"]["m"]) == list(range(10, 20))
    assert entries(b, "v").keys() == set(range(10, 20))


@pytest.mark.parametrize(("src", "dst"), [("heap", "disk"), ("disk", "heap")])
def test_ttl_timestamps_survive_a_restore_into_the_other_backend(
    factory: Callable[..., HeapKeyedStateBackend], clock: ManualClock, src: str, dst: str
) -> None:
    cfg = ttl_config()
    old = factory(src)
    old.set_current_key("k")
    old.get_state(with_ttl(ValueStateDescriptor[int]("v"), cfg)).update(1)
    old.get_list_state(with_ttl(ListStateDescriptor[int]("l"), cfg)).add(2)
    old.get_map_state(with_ttl(MapStateDescriptor[str, int]("m"), cfg)).put("x", 3)
    snap = pickle.loads(pickle.dumps(old.snapshot(), protocol=5))
    new = factory(dst)
    new.restore([snap], range(MAXP))
    new.set_current_key("k")
    value = new.get_state(with_ttl(ValueStateDescriptor[int]("v"), cfg))
    lst = new.get_list_state(with_ttl(ListStateDescriptor[int]("l"), cfg))
    mp = new.get_map_state(with_ttl(MapStateDescriptor[str, int]("m"), cfg))
    clock.advance(999)
    assert (value.value(), lst.get(), mp.get("x")) == (1, [2], 3)
    clock.advance(1)
    assert (value.value(), lst.get(), mp.get("x")) == (None, [], None)


def test_switching_ttl_on_or_off_across_a_restore(
    factory: Callable[..., HeapKeyedStateBackend], clock: ManualClock
) -> None:
    for kind in BACKENDS:
        plain = factory(kind)
        plain.set_current_key("k")
        plain.get_list_state(ListStateDescriptor[int]("l")).add(1)
        ttl_on = factory(kind)
        ttl_on.restore([pickle.loads(pickle.dumps(plain.snapshot()))], range(MAXP))
        ttl_on.set_current_key("k")
        lst = ttl_on.get_list_state(with_ttl(ListStateDescriptor[int]("l"), ttl_config()))
        assert lst.get() == [1]  # restored entries start their TTL now
        clock.advance(1000)
        assert lst.get() == []
        lst.add(2)
        ttl_off = factory(kind)
        ttl_off.restore([pickle.loads(pickle.dumps(ttl_on.snapshot()))], range(MAXP))
        ttl_off.set_current_key("k")
        assert ttl_off.get_list_state(ListStateDescriptor[int]("l")).get() == [2]


# -- the disk backend itself -------------------------------------------------------------------
def test_disk_backend_keeps_state_on_disk_with_a_bounded_cache(tmp_path: Path) -> None:
    b = DiskKeyedStateBackend(MAXP, directory=tmp_path, cache_size=100, label="op/1")
    assert Path(b.directory).parent == tmp_path
    assert Path(b.directory).name.startswith("strom-state-op_1-")
    table = b.table(ValueStateDescriptor[Any]("big"))
    assert isinstance(table, DiskTable)
    empty = b.disk_usage()
    for i in range(5000):
        table[i] = "x" * 1000
        assert table.cached_entries <= 100
    assert b.disk_usage() > empty + 5_000_000  # the values really are in the store
    assert len(table) == 5000
    assert table[1234] == "x" * 1000
    b.close()
    assert not Path(b.directory).exists()
    assert list(tmp_path.iterdir()) == []


def test_disk_backend_with_a_custom_serializer(
    factory: Callable[..., HeapKeyedStateBackend], clock: ManualClock
) -> None:
    b = factory("disk", serializer=JsonSerializer())
    value = b.get_state(ValueStateDescriptor[list[int]]("v"))
    lst = b.get_list_state(with_ttl(ListStateDescriptor[str]("l"), ttl_config()))
    mp = b.get_map_state(with_ttl(MapStateDescriptor[str, int]("m"), ttl_config()))
    for i in range(10):
        b.set_current_key(f"k{i}")
        value.update([i, i])
        lst.add(f"e{i}")
        mp.put("n", i)
    b.set_current_key("k3")
    assert (value.value(), lst.get(), mp.get("n")) == ([3, 3], ["e3"], 3)
    snap = pickle.loads(pickle.dumps(b.snapshot()))
    assert snap["tables"]["l"]["k3"] == [TtlValue("e3", clock())]


def test_disk_backend_restores_files_it_did_not_write(tmp_path: Path) -> None:
    """Close removes everything, also with several states and after restores."""
    old = DiskKeyedStateBackend(MAXP, directory=tmp_path, cache_size=2)
    old.set_current_key("a")
    old.get_state(ValueStateDescriptor[int]("v")).update(1)
    snap = old.snapshot()
    new = DiskKeyedStateBackend(MAXP, directory=tmp_path, cache_size=2)
    new.restore([snap], range(MAXP))  # straight from the live snapshot, no pickle
    new.set_current_key("a")
    assert new.get_state(ValueStateDescriptor[int]("v")).value() == 1
    for b in (old, new):
        b.close()
        b.close()  # idempotent
    assert os.listdir(tmp_path) == []


def test_set_state_backend_validates(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    assert env.get_state_backend() == "heap"
    with pytest.raises(InvalidJobError, match="unknown state backend 'rocksdb'; choose one of"):
        env.set_state_backend("rocksdb")
    with pytest.raises(InvalidJobError, match="only apply to the 'disk' state backend"):
        env.set_state_backend("heap", directory=tmp_path)
    with pytest.raises(InvalidJobError, match="state cache size must be a positive integer"):
        env.set_state_backend("disk", cache_size=0)
    with pytest.raises(InvalidJobError, match="serializer must have dumps"):
        env.set_state_backend("disk", serializer=object())  # type: ignore[arg-type]
    env.set_state_backend("disk", directory=tmp_path, cache_size=10, serializer=JsonSerializer())
    assert env.get_state_backend() == "disk"
    env.from_collection([1]).print()
    assert env.get_job_graph().config.state_dir == str(tmp_path)
