"""A job restored in the middle of windows produces the same results as an uninterrupted one."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from strom import StreamExecutionEnvironment
from strom.eventtime import WatermarkStrategy
from strom.functions import AggregateFunction, MapFunction
from strom.runtime.restart import RestartStrategies
from strom.testing import TestingSink, TestingSource, fail_once_at
from strom.windowing import (
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)

pytestmark = pytest.mark.integration

EVENTS = [
    (f"k{random.Random(i).randrange(7)}", i * 37 + random.Random(-i).randrange(300), 1)
    for i in range(3000)
]


class Count(AggregateFunction[Any, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, acc: int) -> int:
        return acc + 1

    def get_result(self, acc: int) -> int:
        return acc

    def merge(self, a: int, b: int) -> int:
        return a + b


class Slow(MapFunction[Any, Any]):
    def map(self, value: Any) -> Any:
        if random.random() < 0.01:
            import time

            time.sleep(0.002)
        return value


def run(tmp_path: Path, parallelism: int, assigner: Any, fail_at: int | None) -> list[Any]:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(25).set_auto_watermark_interval(5)
    env.enable_checkpointing(15)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(400).with_timestamp_assigner(
        lambda e, _: e[1]
    )
    stream = env.from_source(TestingSource(EVENTS, parallel=True), strategy).uid("src")
    stream = stream.map(Slow()).uid("slow")
    if fail_at is not None:
        stream = stream.map(fail_once_at(fail_at)).uid("fail")
    sink: TestingSink[Any] = TestingSink()
    (
        stream.key_by(lambda e: e[0])
        .window(assigner)
        .aggregate(Count(), window_function=lambda k, w, counts: [(k, w.start, w.end, *counts)])
        .uid("windows")
        .sink_to(sink)
    )
    client = env.execute_async(f"window-recovery-{fail_at}")
    client.wait(60)
    assert client.restarts == (0 if fail_at is None else 1)  # type: ignore[attr-defined]
    return sink.results


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize(
    "assigner",
    [
        TumblingEventTimeWindows.of(1000),
        SlidingEventTimeWindows.of(3000, 1000),
        EventTimeSessionWindows.with_gap(150),
    ],
    ids=["tumbling", "sliding", "session"],
)
def test_restored_mid_window_matches_uninterrupted(
    tmp_path: Path, parallelism: int, assigner: Any
) -> None:
    random.seed(3)
    expected = run(tmp_path / "a", parallelism, assigner, None)
    recovered = run(tmp_path / "b", parallelism, assigner, 1500 // parallelism)
    # windows fired before the failure may fire again after the restore (the sink is
    # at-least-once), but always with the same, complete result
    assert sorted(set(recovered)) == sorted(expected)
    assert len(set(expected)) == len(expected)
