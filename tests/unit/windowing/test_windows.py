"""Windows against a brute-force reference, lateness, triggers, timers, side outputs."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom import InvalidJobError, StreamExecutionEnvironment
from strom.eventtime import Duration, WatermarkStrategy
from strom.functions import AggregateFunction, KeyedProcessFunction, OutputTag, ProcessFunction
from strom.testing import ManualClock, TestingSink, TestingSource
from strom.windowing import (
    ContinuousEventTimeTrigger,
    EventTimeSessionWindows,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)

Event = tuple[str, int, int]  # key, timestamp, value


class SumCount(AggregateFunction[Event, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Event, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value[2], acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Tag(ProcessWindowFunction[Any, Any, str]):
    def process(self, key: str, context: Any, elements: Any) -> Iterator[Any]:
        w = context.window()
        for e in elements:
            yield (key, w.start, w.end, e)


def strategy(delay: int = 0) -> WatermarkStrategy:
    return WatermarkStrategy.for_bounded_out_of_orderness(delay).with_timestamp_assigner(
        lambda e, _: e[1]
    )


def env_for(parallelism: int) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(5)
    return env


def run(stream: Any) -> list[Any]:
    return sorted(stream.execute_and_collect(limit=1_000_000))


def brute_force(events: list[Event], windows_of: Any) -> list[Any]:
    acc: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for key, ts, value in events:
        for start, end in windows_of(ts):
            a = acc[(key, start, end)]
            a[0] += value
            a[1] += 1
    return sorted((k, s, e, (a[0], a[1])) for (k, s, e), a in acc.items())


def sessions(events: list[Event], gap: int) -> list[Any]:
    by_key: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_key[e[0]].append(e)
    out = []
    for key, evs in by_key.items():
        evs.sort(key=lambda e: e[1])
        start, end, total, n = evs[0][1], evs[0][1] + gap, 0, 0
        for _, ts, v in evs:
            if ts > end:  # a gap: the session ended (touching windows merge, as in Flink)
                out.append((key, start, end, (total, n)))
                start, total, n = ts, 0, 0
            end = max(end, ts + gap)
            total += v
            n += 1
        out.append((key, start, end, (total, n)))
    return sorted(out)


events_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 20_000), st.integers(0, 9)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, parallelism=st.sampled_from([1, 4]))
def test_tumbling_and_sliding_match_brute_force(events: list[Event], parallelism: int) -> None:
    # a delay larger than any disorder: nothing is late, every event counts
    tumbling = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy(20_001))
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .aggregate(SumCount(), Tag())
    )
    assert tumbling == brute_force(events, lambda ts: [(ts - ts % 1000, ts - ts % 1000 + 1000)])

    def sliding_windows(ts: int) -> list[tuple[int, int]]:
        last = ts - ts % 500
        return [(s, s + 2000) for s in range(last, ts - 2000, -500)]

    sliding = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy(20_001))
        .key_by(lambda e: e[0])
        .window(SlidingEventTimeWindows.of(2000, 500))
        .aggregate(SumCount(), Tag())
    )
    assert sliding == brute_force(events, sliding_windows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, parallelism=st.sampled_from([1, 4]))
def test_session_windows_match_brute_force(events: list[Event], parallelism: int) -> None:
    out = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy(20_001))
        .key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_gap(700))
        .aggregate(SumCount(), Tag())
    )
    assert out == sessions(events, 700)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_sliding_with_reduce_and_process_agree(parallelism: int) -> None:
    events = [("k", ts, 1) for ts in range(0, 10_000, 250)]
    reduced = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy())
        .key_by(lambda e: e[0])
        .window(SlidingEventTimeWindows.of(Duration.of_seconds(3), Duration.of_seconds(1)))
        .reduce(lambda a, b: (a[0], a[1], a[2] + b[2]), Tag())
    )
    processed = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy())
        .key_by(lambda e: e[0])
        .window(SlidingEventTimeWindows.of(Duration.of_seconds(3), Duration.of_seconds(1)))
        .process(Tag())
    )
    sums = {(s, e): r[3][2] for r in reduced for s, e in [(r[1], r[2])]}
    counts = Counter((r[1], r[2]) for r in processed)
    assert sums == dict(counts)
    assert sums[(0, 3000)] == 12


@pytest.mark.parametrize("parallelism", [1, 4])
def test_late_records_go_to_side_output_and_lateness_refires(parallelism: int) -> None:
    late = OutputTag("late")
    # watermark follows the data exactly (delay 0); (k, 500) arrives after the watermark
    # passed 1999: its window [0, 1000) is past the 1000 ms lateness -> side output
    events: list[Any] = [
        ("k", 100, 1),
        ("k", 1500, 1),
        ("k", 2500, 1),
        TestingSource.PAUSE(0.5),  # let the watermark of 2499 reach the window operator
        ("k", 1200, 1),  # late, but its window [1000, 2000) is within the lateness: re-fire
        ("k", 500, 1),  # too late: window [0, 1000) ended at 999 and 999 + 1000 <= 2499
    ]
    env = env_for(parallelism).set_auto_watermark_interval(10)
    windowed = (
        env.from_source(TestingSource(events), strategy())
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .allowed_lateness(1000)
        .side_output_late_data(late)
        .aggregate(SumCount(), Tag())
    )
    main, side = TestingSink(), TestingSink()
    windowed.sink_to(main)
    windowed.get_side_output(late).sink_to(side)
    env.execute()
    assert side.results == [("k", 500, 1)]
    fired = sorted(main.results)
    assert ("k", 1000, 2000, (1, 1)) in fired  # on time
    assert ("k", 1000, 2000, (2, 2)) in fired  # late firing with the updated result
    assert ("k", 0, 1000, (1, 1)) in fired


@pytest.mark.parametrize("parallelism", [1, 4])
def test_count_window_and_continuous_trigger(parallelism: int) -> None:
    events = [("k", i * 100, 1) for i in range(10)]
    counted = run(
        env_for(parallelism)
        .from_collection(events)
        .key_by(lambda e: e[0])
        .count_window(4)
        .reduce(lambda a, b: (a[0], b[1], a[2] + b[2]))
    )
    assert [c[2] for c in counted] == [4, 4]  # the last 2 never fill a window
    early = run(
        env_for(parallelism)
        .from_source(TestingSource(events), strategy())
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(10_000))
        .trigger(ContinuousEventTimeTrigger.of(300))
        .aggregate(SumCount())
    )
    assert early[-1] == (10, 10)
    assert len(early) > 1  # fired before the window ended, with partial results


def test_processing_time_windows_with_manual_clock() -> None:
    clock = ManualClock(0)
    env = env_for(1).set_processing_time_clock(clock)
    items: list[Any] = [("k", 0, 1), ("k", 0, 1), TestingSource.PAUSE(3.0), ("k", 0, 1)]
    sink = TestingSink()
    (
        env.from_source(TestingSource(items))
        .key_by(lambda e: e[0])
        .window(TumblingProcessingTimeWindows.of(1000))
        .aggregate(SumCount())
        .sink_to(sink)
    )
    client = env.execute_async()
    import time

    time.sleep(1.0)  # the first two records are in (generous: CI may be loaded)
    clock.advance(1000)  # closes [0, 1000) with the first two records
    deadline = time.monotonic() + 1.5
    while not sink.results and time.monotonic() < deadline:
        time.sleep(0.02)
    clock.advance(1000)
    client.wait(15)
    assert sink.results[0] == (2, 2)


class Timeouts(KeyedProcessFunction[str, Event, Any]):
    """Emits (key, 'timeout', ts) when no record came for 1 s of event time."""

    def open(self, runtime_context: Any) -> None:
        from strom.state import ValueStateDescriptor

        self.deadline = runtime_context.get_state(ValueStateDescriptor[int]("deadline"))

    def process_element(self, value: Event, ctx: Any) -> Iterator[Any]:
        old = self.deadline.value()
        if old is not None:
            ctx.timer_service().delete_event_time_timer(old)
        new = ctx.timestamp() + 1000
        self.deadline.update(new)
        ctx.timer_service().register_event_time_timer(new)
        yield (value[0], "seen", value[1])

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        yield (ctx.get_current_key(), "timeout", timestamp)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_event_time_timers_fire_and_can_be_deleted(parallelism: int) -> None:
    events: list[Any] = [
        ("a", 0, 0),
        ("b", 100, 0),
        ("a", 900, 0),  # replaces a's timer 1000 with 1900
        TestingSource.PAUSE(0.3),
        ("c", 2500, 0),  # watermark 2499 passes a@1900 and b@1100
        TestingSource.PAUSE(0.3),
        ("a", 3000, 0),
    ]
    env = env_for(parallelism).set_auto_watermark_interval(10)
    out = run(
        env.from_source(TestingSource(events), strategy())
        .key_by(lambda e: e[0])
        .process(Timeouts())
    )
    timeouts = sorted(x for x in out if x[1] == "timeout")
    # the final watermark at end of input fires the rest
    assert timeouts == [
        ("a", "timeout", 1900),
        ("a", "timeout", 4000),
        ("b", "timeout", 1100),
        ("c", "timeout", 3500),
    ]


def test_timers_need_a_keyed_stream() -> None:
    class NeedsTimer(ProcessFunction[int, int]):
        def process_element(self, value: int, ctx: Any) -> Iterator[int]:
            ctx.timer_service().register_event_time_timer(5)
            yield value

    from strom import JobExecutionError

    env = env_for(1)
    env.from_collection([1]).process(NeedsTimer()).print()
    with pytest.raises(JobExecutionError, match="timers are only available on a keyed stream"):
        env.execute()


@pytest.mark.parametrize("parallelism", [1, 4])
def test_side_outputs_from_process_functions(parallelism: int) -> None:
    odd = OutputTag("odd")

    class Split(ProcessFunction[int, int]):
        def process_element(self, value: int, ctx: Any) -> Iterator[Any]:
            if value % 2:
                yield odd, value
            else:
                yield value

    env = env_for(parallelism)
    main = env.from_collection(range(20)).process(Split())
    evens, odds = TestingSink(), TestingSink()
    main.sink_to(evens)
    main.get_side_output(odd).map(lambda x: x * 10).sink_to(odds)
    env.execute()
    assert sorted(evens.results) == list(range(0, 20, 2))
    assert sorted(odds.results) == [x * 10 for x in range(1, 20, 2)]


def test_idle_source_subtasks_do_not_hold_back_windows() -> None:
    # parallel source at 2 subtasks: subtask 1 gets no items (only one element in total)...
    events: list[Any] = [("k", 100, 1), ("k", 5000, 1), TestingSource.PAUSE(6.0)]
    env = env_for(2).set_auto_watermark_interval(10)
    sink = TestingSink()
    ws = strategy().with_idleness(100)
    (
        env.from_source(TestingSource(events, parallel=True), ws)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .aggregate(SumCount())
        .sink_to(sink)
    )
    client = env.execute_async()
    import time

    # generous: CI runs this next to broker processes; the pause is longer still
    deadline = time.monotonic() + 5.0
    while not sink.results and time.monotonic() < deadline:
        time.sleep(0.02)
    # window [0, 1000) fired during the pause: the subtask without data went idle
    assert sink.results[:1] == [(1, 1)]
    client.wait(10)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TumblingEventTimeWindows.of(0), "window size must be > 0"),
        (lambda: TumblingEventTimeWindows.of(-5), "window size must be > 0"),
        (lambda: SlidingEventTimeWindows.of(1000, 2000), "slide .* must not be larger"),
        (lambda: SlidingEventTimeWindows.of(1000, 0), "window slide must be > 0"),
        (lambda: EventTimeSessionWindows.with_gap(0), "session gap must be > 0"),
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(-1), "out-of-orderness"),
    ],
)
def test_invalid_windows_fail_at_build_time(build: Any, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        build()


def test_event_time_window_without_timestamps_fails_at_build_time() -> None:
    env = env_for(1)
    keyed = env.from_collection([("k", 1, 1)]).key_by(lambda e: e[0])
    with pytest.raises(InvalidJobError, match="needs event timestamps"):
        keyed.window(TumblingEventTimeWindows.of(1000))
    with pytest.raises(InvalidJobError, match="allowed lateness must be >= 0"):
        env.from_source(TestingSource([("k", 1, 1)]), strategy()).key_by(lambda e: e[0]).window(
            TumblingEventTimeWindows.of(1000)
        ).allowed_lateness(-1)


def test_punctuated_generator_emits_watermarks_from_marker_records() -> None:
    from strom.eventtime import WatermarkGenerator, WatermarkOutput

    class OnMarkers(WatermarkGenerator):
        """Only records flagged as markers advance event time (punctuated)."""

        def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
            if event[0] == "marker":
                output.emit_watermark(event_timestamp)

        def on_periodic_emit(self, output: WatermarkOutput) -> None:
            pass

    strategy_ = WatermarkStrategy.for_generator(OnMarkers).with_timestamp_assigner(
        lambda e, _: e[1]
    )

    class SeeWatermark(ProcessFunction[Any, Any]):
        def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
            yield (value[0], ctx.current_watermark())

    items: list[Any] = [
        ("a", 10, 0),
        ("marker", 100, 0),
        TestingSource.PAUSE(0.2),
        ("b", 150, 0),
        ("marker", 300, 0),
        TestingSource.PAUSE(0.2),
        ("c", 310, 0),
    ]
    env = env_for(1)
    env.set_batch_size(1)
    out = (
        env.from_source(TestingSource(items), strategy_)
        .rebalance()  # a channel hop: the process function sees the watermarks that arrived
        .process(SeeWatermark())
        .set_parallelism(1)
        .execute_and_collect(limit=10)
    )
    seen = dict(out)
    assert seen["b"] >= 100  # the first marker's watermark arrived before b
    assert seen["c"] >= 300
    assert seen["a"] < 100


def test_processing_time_timers_on_a_manual_clock() -> None:
    import time

    class Remind(KeyedProcessFunction[str, Any, Any]):
        def process_element(self, value: Any, ctx: Any) -> None:
            ctx.timer_service().register_processing_time_timer(
                ctx.timer_service().current_processing_time() + 1000
            )

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
            yield (ctx.get_current_key(), timestamp, ctx.time_domain().value)

    clock = ManualClock(5_000)
    env = env_for(1).set_processing_time_clock(clock)
    sink: TestingSink[Any] = TestingSink()
    items: list[Any] = [("k", 0, 0), TestingSource.PAUSE(1.0)]
    env.from_source(TestingSource(items)).key_by(lambda e: e[0]).process(Remind()).sink_to(sink)
    client = env.execute_async()
    time.sleep(0.3)
    assert sink.results == []  # the clock has not moved
    clock.advance(1000)
    deadline = time.monotonic() + 2
    while not sink.results and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.results == [("k", 6000, "processing_time")]
    client.wait(10)


def test_watermark_waits_for_declared_splits_that_sent_nothing_yet() -> None:
    from strom.connectors.base import Batch, ReaderContext, Source, SourceReader

    class TwoSplits(Source[Any]):
        """Split "a" has data at once; split "b" only after a while (e.g. a slow partition)."""

        max_parallelism = 1

        def create_reader(self, ctx: ReaderContext) -> SourceReader[Any]:
            class Reader(SourceReader[Any]):
                def __init__(self) -> None:
                    self.step = 0

                def active_splits(self) -> list[str]:
                    return ["a", "b"]

                def poll(self, max_records: int) -> Any:
                    self.step += 1
                    if self.step == 1:
                        return Batch([("k", 5_000, 1)], None, "a")
                    if self.step < 20:
                        import time

                        time.sleep(0.01)  # b is slow; periodic watermarks keep coming
                        return []
                    if self.step == 20:
                        return Batch([("k", 100, 1)], None, "b")  # early data from b
                    return None

            return Reader()

    env = env_for(1).set_auto_watermark_interval(5)
    out = run(
        env.from_source(TwoSplits(), strategy())
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .aggregate(SumCount())
    )
    # b's record at 100 is not late: a alone must not have pushed event time to 4999
    assert out == [(1, 1), (1, 1)]
