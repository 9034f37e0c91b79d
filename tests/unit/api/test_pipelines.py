"""Pipelines through the public API, each at parallelism 1 and 4."""

from collections import Counter
from collections.abc import Iterator
from typing import Any

from strom import StreamExecutionEnvironment
from strom.functions import (
    FlatMapFunction,
    IntCounter,
    KeyedProcessFunction,
    ProcessFunction,
    RichMapFunction,
    RuntimeContext,
)
from strom.state import (
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from strom.testing import TestingSink


def collect(stream: Any) -> list[Any]:
    with stream.execute_and_collect() as it:
        return list(it)


def test_map_filter_flat_map(env: StreamExecutionEnvironment) -> None:
    out = collect(
        env.from_collection(range(100))
        .map(lambda x: x * 2)
        .filter(lambda x: x % 3 == 0)
        .flat_map(lambda x: [x, -x])
    )
    expected = [y for x in range(100) if (x * 2) % 3 == 0 for y in (x * 2, -(x * 2))]
    assert sorted(out) == sorted(expected)


def test_function_classes_and_plain_callables_are_equivalent(
    env: StreamExecutionEnvironment,
) -> None:
    class Split(FlatMapFunction[str, str]):
        def flat_map(self, value: str) -> Iterator[str]:
            yield from value.split()

    out = collect(env.from_collection(["a b", "c"]).flat_map(Split()).map(str.upper))
    assert sorted(out) == ["A", "B", "C"]


def test_keyed_sum_is_exact_per_key(env: StreamExecutionEnvironment) -> None:
    words = [f"w{i % 13}" for i in range(500)]
    out = collect(env.from_collection(words).map(lambda w: (w, 1)).key_by(lambda t: t[0]).sum(1))
    final: dict[str, int] = {}
    for w, c in out:
        final[w] = max(final.get(w, 0), c)
    assert final == dict(Counter(words))
    assert len(out) == 500  # a rolling aggregation emits every update


def test_min_max_min_by_max_by(env: StreamExecutionEnvironment) -> None:
    data = [("a", 3, "x"), ("a", 1, "y"), ("b", 5, "z"), ("a", 2, "w"), ("b", 7, "v")]

    def last_per_key(stream: Any) -> dict[str, Any]:
        res: dict[str, Any] = {}
        for r in collect(stream):
            res[r[0]] = r  # per key, updates arrive in input order (one key -> one subtask)
        return res

    def src() -> Any:
        return env.from_collection(data).key_by(lambda t: t[0])

    assert last_per_key(src().min(1)) == {"a": ("a", 1, "x"), "b": ("b", 5, "z")}
    assert last_per_key(src().max(1)) == {"a": ("a", 3, "x"), "b": ("b", 7, "z")}
    assert last_per_key(src().min_by(1)) == {"a": ("a", 1, "y"), "b": ("b", 5, "z")}
    assert last_per_key(src().max_by(1)) == {"a": ("a", 3, "x"), "b": ("b", 7, "v")}


def test_sum_on_dict_field_and_reduce(env: StreamExecutionEnvironment) -> None:
    rows = [{"k": i % 2, "v": i} for i in range(10)]
    out = collect(env.from_collection(rows).key_by(lambda r: r["k"]).sum("v"))
    assert max(r["v"] for r in out if r["k"] == 0) == sum(range(0, 10, 2))
    red = collect(env.from_collection(range(10)).key_by(lambda x: x % 2).reduce(max))
    assert sorted(set(red))[-2:] == [8, 9]


def test_keyed_process_with_every_state_kind(env: StreamExecutionEnvironment) -> None:
    class Track(KeyedProcessFunction[str, tuple[str, int], tuple[Any, ...]]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.count = runtime_context.get_state(ValueStateDescriptor[int]("count"))
            self.seen = runtime_context.get_list_state(ListStateDescriptor[int]("seen"))
            self.by_parity = runtime_context.get_map_state(MapStateDescriptor[int, int]("par"))
            self.total = runtime_context.get_reducing_state(
                ReducingStateDescriptor("total", reduce_function=lambda a, b: a + b)
            )

        def process_element(
            self, value: tuple[str, int], ctx: KeyedProcessFunction.Context
        ) -> Iterator[tuple[Any, ...]]:
            n = (self.count.value() or 0) + 1
            self.count.update(n)
            self.seen.add(value[1])
            parity = value[1] % 2
            self.by_parity.put(parity, (self.by_parity.get(parity) or 0) + 1)
            self.total.add(value[1])
            if n == 4:
                yield (
                    ctx.get_current_key(),
                    n,
                    sorted(self.seen.get()),
                    dict(self.by_parity.items()),
                    self.total.get(),
                )

    data = [(k, i) for i in range(4) for k in ("a", "b", "c")]
    out = collect(env.from_collection(data).key_by(lambda t: t[0]).process(Track()))
    assert sorted(out) == [(k, 4, [0, 1, 2, 3], {0: 2, 1: 2}, 6) for k in ("a", "b", "c")]


def test_keyed_map_can_use_keyed_state(env: StreamExecutionEnvironment) -> None:
    class Numbering(RichMapFunction[str, tuple[str, int]]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.n = runtime_context.get_state(ValueStateDescriptor[int]("n"))

        def map(self, value: str) -> tuple[str, int]:
            n = (self.n.value() or 0) + 1
            self.n.update(n)
            return (value, n)

    out = collect(env.from_collection(list("abcabca")).key_by(lambda x: x).map(Numbering()))
    assert sorted(out) == sorted(
        [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("c", 2), ("a", 3)]
    )


def test_process_function_sees_timestamps_and_yields(env: StreamExecutionEnvironment) -> None:
    class Echo(ProcessFunction[int, Any]):
        def process_element(self, value: int, ctx: ProcessFunction.Context) -> Iterator[Any]:
            yield (value, ctx.timestamp())

    out = collect(env.from_collection([1, 2, 3]).process(Echo()))
    assert sorted(out) == [(1, None), (2, None), (3, None)]


def test_union_of_three_streams(env: StreamExecutionEnvironment) -> None:
    a = env.from_collection(range(10))
    b = env.from_collection(range(10, 20)).map(lambda x: x)
    c = env.from_collection(range(20, 30))
    assert sorted(collect(a.union(b, c))) == list(range(30))


def test_rich_function_lifecycle_and_accumulators(env: StreamExecutionEnvironment) -> None:
    class Tag(RichMapFunction[int, tuple[int, int]]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.index = runtime_context.get_index_of_this_subtask()
            self.parallelism = runtime_context.get_number_of_parallel_subtasks()
            self.seen = IntCounter()
            runtime_context.add_accumulator("seen", self.seen)

        def map(self, value: int) -> tuple[int, int]:
            self.seen.add(1)
            assert self.get_runtime_context().get_index_of_this_subtask() == self.index
            return (self.index, self.parallelism)

    env.from_collection(range(50)).rebalance().map(Tag()).print()
    result = env.execute("acc")
    assert result.get_accumulator_result("seen") == 50
    assert result.job_name == "acc"
    assert result.metrics["Print to Std. Out"]["records_in"] == 50


def test_rebalance_spreads_records_over_all_subtasks(env: StreamExecutionEnvironment) -> None:
    class Index(RichMapFunction[int, int]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.i = runtime_context.get_index_of_this_subtask()

        def map(self, value: int) -> int:
            return self.i

    out = collect(env.from_collection(range(100)).rebalance().map(Index()))
    p = env.get_parallelism()
    assert Counter(out) == dict.fromkeys(range(p), 100 // p)


def test_broadcast_partitioning_duplicates_to_every_subtask(
    env: StreamExecutionEnvironment,
) -> None:
    out = collect(env.from_collection(range(5)).broadcast().map(lambda x: x))
    assert Counter(out) == {x: env.get_parallelism() for x in range(5)}


def test_partition_custom_and_shuffle(env: StreamExecutionEnvironment) -> None:
    class Index(RichMapFunction[int, tuple[int, int]]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.i = runtime_context.get_index_of_this_subtask()

        def map(self, value: int) -> tuple[int, int]:
            return (self.i, value)

    p = env.get_parallelism()
    custom = collect(
        env.from_collection(range(40))
        .partition_custom(lambda k, n: k % n, lambda x: x)
        .map(Index())
    )
    assert all(i == v % p for i, v in custom)
    shuffled = collect(env.from_collection(range(200)).shuffle().map(Index()))
    assert sorted(v for _, v in shuffled) == list(range(200))
    assert len({i for i, _ in shuffled}) == p


def test_print_prefixes_subtask_index_when_parallel(
    env: StreamExecutionEnvironment, capsys: Any
) -> None:
    env.from_collection(["x", "y", "z", "w"]).rebalance().map(str.upper).print()
    env.execute()
    lines = capsys.readouterr().out.splitlines()
    if env.get_parallelism() == 1:
        assert sorted(lines) == ["W", "X", "Y", "Z"]
    else:
        assert sorted(line.split("> ")[1] for line in lines) == ["W", "X", "Y", "Z"]
        assert all(line.split("> ")[0] in {"1", "2", "3", "4"} for line in lines)


def test_print_sample_prints_a_fraction(capsys: Any) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection(range(2000)).print(sample=0.1)
    env.execute()
    n = len(capsys.readouterr().out.splitlines())
    assert 100 < n < 300


def test_execute_and_collect_with_limit_returns_list(env: StreamExecutionEnvironment) -> None:
    out = env.from_collection(range(10)).map(lambda x: x + 1).execute_and_collect(limit=3)
    assert isinstance(out, list)
    assert len(out) == 3
    assert set(out) <= set(range(1, 11))


def test_chaining_puts_forward_operators_in_one_task() -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(2)
    (
        env.from_collection(range(3))
        .map(lambda x: x)
        .filter(bool)
        .key_by(lambda x: x)
        .sum()
        .map(str)
        .print()
    )
    graph = env.get_job_graph()
    names = [[o.name for o in v.operators] for v in graph.vertices]
    assert names == [
        ["Collection Source"],
        ["Map", "Filter"],
        ["Sum", "Map", "Print to Std. Out"],
    ]
    assert [e.partitioner_name for e in graph.edges] == ["rebalance", "hash"]


def test_fan_out_from_the_middle_of_a_chain(env: StreamExecutionEnvironment) -> None:
    from strom.testing import TestingSink

    base = env.from_collection(range(20)).map(lambda x: x * 10)
    evens, odds = TestingSink(), TestingSink()
    base.filter(lambda x: x % 20 == 0).sink_to(evens)
    base.filter(lambda x: x % 20 != 0).sink_to(odds)
    env.execute()
    assert sorted(evens.results) == [x * 10 for x in range(0, 20, 2)]
    assert sorted(odds.results) == [x * 10 for x in range(1, 20, 2)]


def test_accumulator_with_constructor_arguments_is_merged(env: StreamExecutionEnvironment) -> None:
    from strom.functions import Accumulator

    class MaxAcc(Accumulator):
        def __init__(self, start: int) -> None:
            self.value = start

        def add(self, value: Any) -> None:
            self.value = max(self.value, value)

        def get_local_value(self) -> int:
            return self.value

        def merge(self, other: Accumulator) -> None:
            self.value = max(self.value, other.get_local_value())

    class Track(RichMapFunction[int, int]):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.acc = MaxAcc(0)
            runtime_context.add_accumulator("max", self.acc)

        def map(self, value: int) -> int:
            self.acc.add(value)
            return value

    env.from_collection([1, 5, 3]).rebalance().map(Track()).sink_to(TestingSink())
    assert env.execute_async().wait(timeout=10).get_accumulator_result("max") == 5
