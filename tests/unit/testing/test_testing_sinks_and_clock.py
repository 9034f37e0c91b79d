"""TestingSink, CollectingSinkFunction (one store shared by every subtask and every copy),
ManualClock, and run_to_completion."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from strom import DeliveryGuarantee, StreamExecutionEnvironment
from strom.functions import ProcessFunction
from strom.testing import (
    CollectingSinkFunction,
    ManualClock,
    TestingSink,
    TestingSource,
    run_to_completion,
)


@pytest.fixture(params=[1, 4], ids=["p1", "p4"])
def env(request: pytest.FixtureRequest) -> StreamExecutionEnvironment:
    e = StreamExecutionEnvironment.get_execution_environment()
    e.set_parallelism(request.param)
    e.set_batch_size(5)
    return e


def test_testing_sink_collects_from_every_subtask_into_the_given_list(
    env: StreamExecutionEnvironment,
) -> None:
    mine: list[int] = []
    sink = TestingSink(mine)
    env.from_collection(range(100)).rebalance().map(lambda x: x * 2).sink_to(sink)
    run_to_completion(env, timeout=10)
    assert sink.results is mine
    assert sorted(mine) == [x * 2 for x in range(100)]
    assert sink.timestamps == [None] * 100
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE


def test_collecting_sink_function_collects_from_every_subtask(
    env: StreamExecutionEnvironment,
) -> None:
    sink: CollectingSinkFunction[int] = CollectingSinkFunction()
    env.from_source(TestingSource(range(50), parallel=True)).add_sink(sink)
    run_to_completion(env, timeout=10)
    assert sorted(sink.results) == list(range(50))


def test_copies_share_the_store_and_keep_their_own_fields() -> None:
    fn: CollectingSinkFunction[str] = CollectingSinkFunction()
    fn.note = "original"  # type: ignore[attr-defined]
    twin = copy.deepcopy(fn)
    assert twin is not fn
    twin.note = "copy"  # type: ignore[attr-defined]
    twin.invoke("x", _NoTimestamp())
    assert fn.results == ["x"]
    assert fn.note == "original"  # type: ignore[attr-defined]

    sink: TestingSink[str] = TestingSink()
    copy.deepcopy(sink).create_writer(None).write(["y"], None)  # type: ignore[arg-type]
    assert sink.results == ["y"]
    sink.clear()
    assert sink.results == []


def test_a_pickled_sink_is_a_snapshot_not_shared() -> None:
    sink: TestingSink[int] = TestingSink([1])
    clone = pickle.loads(pickle.dumps(sink))
    clone.create_writer(None).write([2], None)
    assert sink.results == [1]
    assert clone.results == [1, 2]


class _NoTimestamp:
    def timestamp(self) -> None:
        return None


# -- ManualClock -----------------------------------------------------------------------------


def test_manual_clock_moves_only_forward_and_only_when_told() -> None:
    clock = ManualClock(start_ms=100)
    assert clock() == 100
    assert clock.advance(50) == 150
    assert clock.set(1_000) == 1_000
    assert clock() == 1_000
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(999)
    with pytest.raises(TypeError, match="milliseconds"):
        clock.advance(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="milliseconds"):
        ManualClock(True)
    assert repr(clock) == "ManualClock(now=1000 ms)"


def test_manual_clock_is_thread_safe() -> None:
    clock = ManualClock()

    def tick() -> None:
        for _ in range(10_000):
            clock.advance(1)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock() == 40_000


class _StampProcessingTime(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield value, ctx.current_processing_time()


def test_manual_clock_drives_a_jobs_processing_time(env: StreamExecutionEnvironment) -> None:
    clock = ManualClock(start_ms=42_000)
    env.set_processing_time_clock(clock)
    out = run_to_completion(env.from_collection(["a", "b"]).process(_StampProcessingTime()))
    assert sorted(out) == [("a", 42_000), ("b", 42_000)]


# -- run_to_completion -----------------------------------------------------------------------


def test_run_to_completion_times_out_on_a_job_that_does_not_end() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = env.from_source(TestingSource([1, TestingSource.PAUSE(30)]))
    with pytest.raises(TimeoutError, match="1 records so far"):
        run_to_completion(stream, timeout=0.3)

    env.from_source(TestingSource([TestingSource.PAUSE(30)])).sink_to(TestingSink())
    with pytest.raises(TimeoutError):
        run_to_completion(env, timeout=0.3)


def test_run_to_completion_of_an_environment_returns_the_result() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    sink: TestingSink[int] = TestingSink()
    env.from_collection([1, 2, 3]).sink_to(sink)
    result = run_to_completion(env, job_name="three")
    assert result.job_name == "three"
    assert sink.results == [1, 2, 3]
    with pytest.raises(TypeError, match="DataStream or an environment"):
        run_to_completion([1, 2])  # type: ignore[call-overload]
