"""Event-time windows with disorder, lateness and per-record watermarks, against a reference.

Each record moves the watermark to ``ts - delay - 1`` right after it (a punctuated generator,
batches of one record, parallelism 1), so which records are late is deterministic and the
reference below can replay Flink's window semantics exactly: every firing (on time and late)
and every record sent to the late side output. The aggregate modifies its accumulators in place
(as Java-style ``AggregateFunction``s do), so sharing an accumulator between panes, windows or
emitted results would show up as wrong counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom import StreamExecutionEnvironment
from strom.eventtime import WatermarkGenerator, WatermarkOutput, WatermarkStrategy
from strom.functions import AggregateFunction, OutputTag
from strom.testing import TestingSink, TestingSource
from strom.windowing import (
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)

Event = tuple[str, int, int]  # key, timestamp, value


class InPlaceSumCount(AggregateFunction[Event, list[int], tuple[int, int]]):
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: Event, acc: list[int]) -> list[int]:
        acc[0] += value[2]
        acc[1] += 1
        return acc

    def get_result(self, acc: list[int]) -> tuple[int, int]:
        return (acc[0], acc[1])

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        a[0] += b[0]
        a[1] += b[1]
        return a


class Tag(ProcessWindowFunction[Any, Any, str]):
    def process(self, key: str, context: Any, elements: Any) -> Iterator[Any]:
        w = context.window()
        for e in elements:
            yield (key, w.start, w.end, e)


def per_record_watermarks(delay: int) -> WatermarkStrategy:
    class EveryRecord(WatermarkGenerator):
        def __init__(self) -> None:
            self.top = -(2**62)

        def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
            self.top = max(self.top, event_timestamp)
            output.emit_watermark(self.top - delay - 1)

        def on_periodic_emit(self, output: WatermarkOutput) -> None:
            pass

    return WatermarkStrategy.for_generator(EveryRecord).with_timestamp_assigner(lambda e, _: e[1])


def reference(
    events: list[Event], size: int, slide: int, delay: int, lateness: int
) -> tuple[list[Any], list[Event]]:
    """Flink's WindowOperator with the event-time trigger, one record and watermark at a time."""
    contents: dict[tuple[str, int], list[int]] = {}
    fired: list[Any] = []
    late: list[Event] = []
    wm = -(2**62)

    def advance(new: int) -> None:
        due = sorted((s + size - 1, k, s) for (k, s) in contents if wm < s + size - 1 <= new)
        for _, k, s in due:
            a = contents[(k, s)]
            fired.append((k, s, s + size, (a[0], a[1])))
        for k, s in list(contents):
            if s + size - 1 + lateness <= new:
                del contents[(k, s)]

    for key, ts, value in events:
        kept = False
        last = ts - ts % slide
        for s in range(last, ts - size, -slide):
            end = s + size - 1
            if end + lateness <= wm:
                continue  # this window is past its lateness
            kept = True
            a = contents.setdefault((key, s), [0, 0])
            a[0] += value
            a[1] += 1
            if end <= wm:  # fired already: a late firing with the update
                fired.append((key, s, s + size, (a[0], a[1])))
        if not kept:
            late.append((key, ts, value))
        new = max(wm, ts - delay - 1)
        advance(new)
        wm = new
    advance(2**62)
    return sorted(fired), sorted(late)


@st.composite
def disordered_events(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 60))
    base, out = 5_000, []
    for _ in range(n):
        base += draw(st.integers(0, 400))
        ts = max(0, base - draw(st.sampled_from([0, 0, 0, 200, 900, 2500])))
        out.append((draw(st.sampled_from("abc")), ts, draw(st.integers(0, 9))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=disordered_events(),
    shape=st.sampled_from([(1000, 1000), (2000, 500), (1500, 500)]),
    delay=st.sampled_from([0, 300]),
    lateness=st.sampled_from([0, 700, 3000]),
)
def test_firings_and_late_records_match_the_reference(
    events: list[Event], shape: tuple[int, int], delay: int, lateness: int
) -> None:
    size, slide = shape
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.set_batch_size(1)
    late_tag = OutputTag("late")
    assigner: Any = (
        TumblingEventTimeWindows.of(size)
        if size == slide
        else SlidingEventTimeWindows.of(size, slide)
    )
    windowed = (
        env.from_source(TestingSource(events), per_record_watermarks(delay))
        .key_by(lambda e: e[0])
        .window(assigner)
        .allowed_lateness(lateness)
        .side_output_late_data(late_tag)
        .aggregate(InPlaceSumCount(), Tag())
    )
    main, side = TestingSink(), TestingSink()
    windowed.sink_to(main)
    windowed.get_side_output(late_tag).sink_to(side)
    env.execute()
    want_fired, want_late = reference(events, size, slide, delay, lateness)
    assert sorted(main.results) == want_fired
    assert sorted(side.results) == want_late


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=disordered_events(),
    batch=st.sampled_from([3, 16, 1024]),
    shape=st.sampled_from([(1000, 1000), (3000, 500)]),
)
def test_batches_across_pane_boundaries_match_the_reference(
    events: list[Event], batch: int, shape: tuple[int, int]
) -> None:
    """Larger batches take the operator's per-pane fast path (and its split of an ordered batch
    into runs); with a delay above any disorder nothing is late, so the reference is exact."""
    size, slide = shape
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.set_batch_size(batch)
    assigner: Any = (
        TumblingEventTimeWindows.of(size)
        if size == slide
        else SlidingEventTimeWindows.of(size, slide)
    )
    out = (
        env.from_source(TestingSource(events), per_record_watermarks(3000))
        .key_by(lambda e: e[0])
        .window(assigner)
        .aggregate(InPlaceSumCount(), Tag())
        .execute_and_collect(limit=100_000)
    )
    want, late = reference(events, size, slide, 3000, 0)
    assert late == []
    assert sorted(out) == want


def test_a_record_comes_before_the_watermark_it_produces() -> None:
    """A punctuated generator may emit a watermark equal to the record's own timestamp: the
    record still belongs to the window that this watermark closes (as in Flink, the record is
    emitted first, then the generator's watermark)."""

    class AtEachRecord(WatermarkGenerator):
        def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
            output.emit_watermark(event_timestamp)

        def on_periodic_emit(self, output: WatermarkOutput) -> None:
            pass

    strategy = WatermarkStrategy.for_generator(AtEachRecord).with_timestamp_assigner(
        lambda e, _: e[1]
    )
    for batch in (1, 2):
        env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
        env.set_batch_size(batch)
        out = (
            env.from_source(TestingSource([("k", 500, 1), ("k", 999, 2)]), strategy)
            .key_by(lambda e: e[0])
            .window(TumblingEventTimeWindows.of(1000))
            .aggregate(InPlaceSumCount(), Tag())
            .execute_and_collect(limit=10)
        )
        assert out == [("k", 0, 1000, (3, 2))], f"batch size {batch}"


def test_a_failing_aggregate_or_key_selector_names_the_record() -> None:
    from strom import JobExecutionError

    class FailsOn13(InPlaceSumCount):
        def add(self, value: Event, acc: list[int]) -> list[int]:
            if value[2] == 13:
                raise ValueError("unlucky")
            return super().add(value, acc)

    def key_of(e: Event) -> str:
        if e[2] == 14:
            raise KeyError("no key")
        return e[0]

    events = [("k", ts, ts // 100) for ts in range(0, 2000, 100)]
    for fn, key, value in ((FailsOn13(), lambda e: e[0], 13), (InPlaceSumCount(), key_of, 14)):
        env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
        env.set_batch_size(8)
        (
            env.from_source(TestingSource(events), per_record_watermarks(0))
            .key_by(key)
            .window(TumblingEventTimeWindows.of(1000))
            .aggregate(fn)
            .sink_to(TestingSink())
        )
        with pytest.raises(JobExecutionError) as info:
            env.execute()
        assert f"on record ('k', {value * 100}, {value})" in str(info.value)


def test_a_failure_in_a_disordered_batch_names_the_record() -> None:
    """A batch out of time order across panes takes the record-by-record path."""
    from strom import JobExecutionError

    class FailsOn13(InPlaceSumCount):
        def add(self, value: Event, acc: list[int]) -> list[int]:
            if value[2] == 13:
                raise ValueError("unlucky")
            return super().add(value, acc)

    events = [("k", 1900, 1), ("k", 100, 2), ("k", 1300, 13), ("k", 200, 4)]
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.set_batch_size(4)
    (
        env.from_source(TestingSource(events), per_record_watermarks(5000))
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .aggregate(FailsOn13())
        .sink_to(TestingSink())
    )
    with pytest.raises(JobExecutionError) as info:
        env.execute()
    assert "on record ('k', 1300, 13)" in str(info.value)
    assert "ValueError: unlucky" in str(info.value)
