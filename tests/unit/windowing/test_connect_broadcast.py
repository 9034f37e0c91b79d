"""connect(): co-map / co-flat-map / co-process (keyed), and the broadcast state pattern."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom import StreamExecutionEnvironment
from strom.functions import RuntimeContext
from strom.functions.co import (
    BroadcastProcessFunction,
    CoFlatMapFunction,
    CoMapFunction,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
)
from strom.runtime.checkpoint import ExternalizedCheckpointRetention
from strom.runtime.checkpoint.storage import find_latest
from strom.state import MapStateDescriptor, ValueStateDescriptor
from strom.testing import TestingSink, TestingSource

RULES = MapStateDescriptor[str, int]("rules")


def env_for(parallelism: int) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(3)
    return env


@pytest.mark.parametrize("parallelism", [1, 4])
def test_co_map_and_co_flat_map(parallelism: int) -> None:
    class Tag(CoMapFunction[int, str, str]):
        def map1(self, value: int) -> str:
            return f"n{value}"

        def map2(self, value: str) -> str:
            return f"s{value}"

    class Both(CoFlatMapFunction[int, str, Any]):
        def flat_map1(self, value: int) -> Iterator[Any]:
            yield value
            yield value

        def flat_map2(self, value: str) -> Iterator[Any]:
            yield value

    env = env_for(parallelism)
    nums, words = env.from_collection([1, 2, 3]), env.from_collection(["a", "b"])
    out = sorted(nums.connect(words).map(Tag()).execute_and_collect(limit=100))
    assert out == ["n1", "n2", "n3", "sa", "sb"]
    env = env_for(parallelism)
    nums, words = env.from_collection([1, 2]), env.from_collection(["a"])
    out2 = nums.connect(words).flat_map(Both()).execute_and_collect(limit=100)
    assert sorted(map(str, out2)) == ["1", "1", "2", "2", "a"]


@pytest.mark.parametrize("parallelism", [1, 4])
def test_keyed_co_process_joins_two_streams_by_key(parallelism: int) -> None:
    class Join(KeyedCoProcessFunction[str, tuple[str, int], tuple[str, str], Any]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.name = runtime_context.get_state(ValueStateDescriptor[str]("name"))
            self.pending = runtime_context.get_state(ValueStateDescriptor[list[int]]("pending"))

        def process_element1(self, value: tuple[str, int], ctx: Any) -> Iterator[Any]:
            name = self.name.value()
            if name is None:
                self.pending.update([*(self.pending.value() or []), value[1]])
            else:
                yield (ctx.get_current_key(), name, value[1])

        def process_element2(self, value: tuple[str, str], ctx: Any) -> Iterator[Any]:
            self.name.update(value[1])
            for amount in self.pending.value() or []:
                yield (ctx.get_current_key(), value[1], amount)
            self.pending.clear()

    env = env_for(parallelism)
    orders = env.from_collection([(f"u{i % 5}", i) for i in range(20)])
    users = env.from_collection([(f"u{i}", f"name{i}") for i in range(5)])
    joined = (
        orders.connect(users).key_by(lambda o: o[0], lambda u: u[0]).process(Join())
    ).execute_and_collect(limit=100)
    assert sorted(joined) == sorted((f"u{i % 5}", f"name{i % 5}", i) for i in range(20))


class ApplyRules(BroadcastProcessFunction[tuple[str, int], tuple[str, int], Any]):
    """Events are scaled by the factor the current rules give their name (default 1)."""

    def process_element(self, value: tuple[str, int], ctx: Any) -> Iterator[Any]:
        rules = ctx.get_broadcast_state(RULES)
        yield (value[0], value[1] * (rules.get(value[0]) or 1))

    def process_broadcast_element(self, value: tuple[str, int], ctx: Any) -> None:
        ctx.get_broadcast_state(RULES).put(value[0], value[1])


@pytest.mark.parametrize("parallelism", [1, 4])
def test_rules_changed_mid_stream_through_broadcast_state(parallelism: int) -> None:
    env = env_for(parallelism)
    rules = env.from_source(
        TestingSource([("a", 10), TestingSource.PAUSE(0.4), ("a", 100)])
    ).set_parallelism(1)
    events = env.from_source(
        TestingSource(
            [TestingSource.PAUSE(0.2), ("a", 1), ("b", 1), TestingSource.PAUSE(0.5), ("a", 2)]
        )
    )
    out = sorted(
        events.connect(rules.broadcast(RULES)).process(ApplyRules()).execute_and_collect(limit=9)
    )
    assert out == [("a", 10), ("a", 200), ("b", 1)]


def test_element_side_cannot_change_broadcast_state() -> None:
    class Writes(BroadcastProcessFunction[int, int, int]):
        def process_element(self, value: int, ctx: Any) -> None:
            ctx.get_broadcast_state(RULES).put("x", value)

        def process_broadcast_element(self, value: int, ctx: Any) -> None:
            pass

    from strom import JobExecutionError

    env = env_for(1)
    env.from_collection([1]).connect(env.from_collection([2]).broadcast(RULES)).process(
        Writes()
    ).print()
    with pytest.raises(JobExecutionError, match="read-only on the element side"):
        env.execute()


class CountPerKeyWithRules(KeyedBroadcastProcessFunction[str, str, tuple[str, int], Any]):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor[int]("count"))

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        limit = ctx.get_broadcast_state(RULES).get("limit") or 0
        yield (ctx.get_current_key(), n, n > limit)

    def process_broadcast_element(self, value: tuple[str, int], ctx: Any) -> None:
        ctx.get_broadcast_state(RULES).put(value[0], value[1])


@pytest.mark.parametrize(("old", "new"), [(1, 3), (3, 2)])
def test_broadcast_state_survives_restore_at_another_parallelism(
    tmp_path: Path, old: int, new: int
) -> None:
    def build(
        parallelism: int, words: list[str], rules: list[Any], run: str
    ) -> tuple[Any, TestingSink[Any]]:
        env = env_for(parallelism)
        env.enable_checkpointing(20)
        env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path))
        env.get_checkpoint_config().set_externalized_checkpoint_retention(
            ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
        )
        sink: TestingSink[Any] = TestingSink()
        rule_stream = env.from_collection(rules).uid(f"rules-{run}")
        (
            env.from_collection(words)
            .uid(f"words-{run}")
            .key_by(lambda w: w)
            .connect(rule_stream.broadcast(RULES))
            .process(CountPerKeyWithRules())
            .uid("counter")
            .sink_to(sink)
        )
        return env, sink

    env, _ = build(old, ["x", "y", "x"], [("limit", 1)], "first")
    env.execute("bcast")
    path = find_latest(str(tmp_path), "bcast")
    assert path is not None
    env, sink = build(new, ["x", "y", "z"], [], "second")  # rules only from the state
    env.restore_from(path, allow_non_restored_state=True)
    env.execute("bcast")
    assert sorted(sink.results) == [("x", 3, True), ("y", 2, True), ("z", 1, False)]
