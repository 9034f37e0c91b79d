"""Window aggregation: 1M records, 50 keys, event time (10 ms apart, in order).

* ``plain-tumbling``: a hand-written, fully inlined dict aggregation per key of the open
  1-minute window, emitted as the data passes the minute — the ceiling for Python;
* ``plain-functions``: the same loop calling the job's functions (timestamp assigner, key
  selector, ``AggregateFunction``) — what hand-written code that reuses them costs;
* ``strom-tumbling``: ``key_by -> window(TumblingEventTimeWindows 1 min) -> aggregate``;
* ``strom-sliding``: the same with 60-minute windows sliding by 1 minute (pane-based).
Each produces per-window (count, sum); the checksum compares tumbling variants.
"""

from __future__ import annotations

import random
import time
from typing import Any

from strom import StreamExecutionEnvironment
from strom.connectors.base import Sink, SinkWriter, WriterContext
from strom.eventtime import WatermarkStrategy
from strom.functions import AggregateFunction
from strom.windowing import SlidingEventTimeWindows, TumblingEventTimeWindows

MINUTE = 60_000
Record = tuple[str, int, int]


def records(n: int, seed: int = 7) -> list[Record]:
    rnd = random.Random(seed)
    keys = [f"/api/{i}" for i in range(50)]
    return [(keys[rnd.randrange(50)], i * 10, rnd.randrange(1, 500)) for i in range(n)]


class CountSum(AggregateFunction[Record, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Record, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + 1, acc[1] + value[2])

    def get_result(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


def plain_tumbling(data: list[Record]) -> list[Any]:
    """One dict of the open minute's (count, sum) per key, emitted and dropped as soon as the
    data moves past the minute (input is in time order) — the same work the engine does."""
    out: list[tuple[int, int]] = []
    acc: dict[str, tuple[int, int]] = {}
    get = acc.get
    window_end = MINUTE
    for key, ts, value in data:
        if ts >= window_end:
            out.extend(acc.values())
            acc.clear()
            window_end = ts - ts % MINUTE + MINUTE
        c = get(key)
        acc[key] = (1, value) if c is None else (c[0] + 1, c[1] + value)
    out.extend(acc.values())
    return sorted(out)


def timestamp_of(r: Record, _: Any) -> int:
    return r[1]


def key_of(r: Record) -> str:
    return r[0]


def plain_functions(data: list[Record]) -> list[Any]:
    """The same loop, calling the job's functions (timestamp assigner, key selector,
    AggregateFunction) as the engine must — what hand-written code reusing them costs."""
    agg = CountSum()
    add, create, result = agg.add, agg.create_accumulator, agg.get_result
    out: list[tuple[int, int]] = []
    acc: dict[str, tuple[int, int]] = {}
    get = acc.get
    window_end = MINUTE
    for r in data:
        ts = timestamp_of(r, None)
        if ts >= window_end:
            out.extend(map(result, acc.values()))
            acc.clear()
            window_end = ts - ts % MINUTE + MINUTE
        k = key_of(r)
        c = get(k)
        acc[k] = add(r, create() if c is None else c)
    out.extend(map(result, acc.values()))
    return sorted(out)


class _Collect(Sink[Any]):
    def __init__(self) -> None:
        self.out: list[Any] = []

    def create_writer(self, ctx: WriterContext) -> SinkWriter[Any]:
        out = self.out

        class _W(SinkWriter[Any]):
            def write(self, values: list[Any], timestamps: Any) -> None:
                out.extend(values)

        return _W()


def engine(data: list[Record], sliding: bool) -> list[Any]:
    env = StreamExecutionEnvironment.get_execution_environment()
    sink = _Collect()
    assigner: Any = (
        SlidingEventTimeWindows.of(60 * MINUTE, MINUTE)
        if sliding
        else TumblingEventTimeWindows.of(MINUTE)
    )
    (
        env.from_collection(data)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(timestamp_of)
        )
        .key_by(key_of)
        .window(assigner)
        .aggregate(CountSum())
        .sink_to(sink)
    )
    env.execute("bench-windows")
    return sorted(sink.out)


def run(variant: str, data: list[Record]) -> tuple[float, Any]:
    start = time.process_time()
    if variant == "plain-tumbling":
        result: Any = plain_tumbling(data)
    elif variant == "plain-functions":
        result = plain_functions(data)
    elif variant == "strom-tumbling":
        result = engine(data, sliding=False)
    else:
        result = engine(data, sliding=True)
        result = len(result)  # different windows: not comparable to the tumbling checksum
    return time.process_time() - start, result
