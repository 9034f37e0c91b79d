"""TestingSource: order, the EOF / ABORT / PAUSE markers, its position as state (also across
rescaling), and the same behaviour inside real jobs at parallelism 1 and 4."""

from __future__ import annotations

import copy
import pickle
import random
import time
from collections import Counter
from typing import Any

import pytest

from strom import DeliveryGuarantee, JobExecutionError, StreamExecutionEnvironment
from strom.testing import SourceReaderHarness, TestingSink, TestingSource, run_to_completion

EOF, ABORT, PAUSE = TestingSource.EOF, TestingSource.ABORT, TestingSource.PAUSE


def drain(source: TestingSource[Any], restored: list[Any] | None = None) -> tuple[list[Any], Any]:
    with SourceReaderHarness(source, restored_state=restored) as h:
        out = h.poll_all()
        return out, h.snapshot()


def test_emits_items_in_order_and_declares_exactly_once() -> None:
    source = TestingSource(iter(range(5)))  # a generator is materialised once
    assert drain(source)[0] == [0, 1, 2, 3, 4]
    assert drain(source)[0] == [0, 1, 2, 3, 4]
    assert source.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE
    assert source.describe() == "TestingSource (5 items)"


def test_eof_ends_the_stream_and_a_restored_run_resumes_after_it() -> None:
    source = TestingSource([0, 1, EOF, 2, 3, EOF, 4])
    first, snap = drain(source)
    assert first == [0, 1]
    second, snap = drain(source, [snap])
    assert second == [2, 3]
    third, snap = drain(source, [snap])
    assert third == [4]
    assert drain(source, [snap])[0] == []
    assert drain(source)[0] == [0, 1]  # a fresh run starts over


def test_eof_not_yet_reached_at_the_snapshot_still_ends_the_restored_run() -> None:
    source = TestingSource([0, 1, EOF, 2])
    with SourceReaderHarness(source) as h:
        assert h.poll() == [0, 1]  # the batch stops before the marker
        snap = h.snapshot()
    assert drain(source, [snap])[0] == []


def test_abort_raises_once_then_is_skipped() -> None:
    source = TestingSource([0, 1, ABORT, 2])
    with SourceReaderHarness(source) as h:
        with pytest.raises(TestingSource.Aborted, match="index 2"):
            h.poll_all()
        assert h.output == [0, 1]  # what came before the crash was emitted
    # restarted from before the marker (here: from scratch), the run goes through
    assert drain(source)[0] == [0, 1, 2]
    # the flag belongs to this source object: another one aborts again
    with pytest.raises(TestingSource.Aborted):
        drain(TestingSource([0, 1, ABORT, 2]))


def test_abort_registry_survives_copies_of_the_source() -> None:
    source = TestingSource([ABORT, 1])
    twin = copy.deepcopy(source)
    with pytest.raises(TestingSource.Aborted):
        drain(twin)
    assert drain(source)[0] == [1]


def test_pause_emits_nothing_for_a_while_without_ending() -> None:
    source = TestingSource([0, PAUSE(0.15), 1])
    with SourceReaderHarness(source) as h:
        start = time.monotonic()
        assert h.poll() == [0]
        assert h.poll() == []
        assert not h.finished
        assert h.poll_all() == [1]
        assert time.monotonic() - start >= 0.15


def test_a_paused_poll_blocks_briefly_and_wakeup_cuts_it_short() -> None:
    with SourceReaderHarness(TestingSource([PAUSE(10), 1])) as h:
        assert h.poll() == []  # starts the pause
        start = time.monotonic()
        assert h.poll() == []
        assert 0.02 <= time.monotonic() - start < 0.5  # ~max_poll_wait, not the whole pause
        woken = []
        for _ in range(5):  # the best of five, so a busy machine does not fail the test
            h.wakeup()
            start = time.monotonic()
            assert h.poll() == []
            woken.append(time.monotonic() - start)
        assert min(woken) < 0.02


def test_markers_pickle_and_copy_to_themselves() -> None:
    for marker in (EOF, ABORT):
        assert pickle.loads(pickle.dumps(marker)) is marker
        assert copy.deepcopy(marker) is marker
    assert pickle.loads(pickle.dumps(PAUSE(1.5))) == PAUSE(1.5)
    assert repr(EOF) == "TestingSource.EOF"


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="PAUSE"):
        PAUSE(-1)
    with pytest.raises(ValueError, match="PAUSE"):
        PAUSE(float("nan"))
    with pytest.raises(TypeError):
        TestingSource("abc")
    with pytest.raises(ValueError, match="batch_size"):
        TestingSource([1], batch_size=0)
    with pytest.raises(ValueError, match="not a TestingSource snapshot"):
        drain(TestingSource([1]), [["garbage"]])


# -- parallel ------------------------------------------------------------------------------


def test_parallel_split_by_item_index_with_markers_applying_to_every_subtask() -> None:
    source = TestingSource(["a", "b", "c", EOF, "d", "e", "f", "g"], parallel=True)
    outs, snaps = [], []
    for i in range(2):
        with SourceReaderHarness(source, i, 2) as h:
            outs.append(h.poll_all())
            snaps.append(h.snapshot())
    assert outs == [["a", "c"], ["b"]]
    resumed = []
    for i in range(2):
        with SourceReaderHarness(source, i, 2, restored_state=snaps) as h:
            resumed.append(h.poll_all())
    assert resumed == [["e", "g"], ["d", "f"]]


@pytest.mark.parametrize("seed", range(25))
def test_restores_across_rescaling_are_exactly_once(seed: int) -> None:
    """Three runs at random parallelisms, each cut at random points per subtask (the snapshot
    of a checkpoint), the last run drained: every item comes out exactly once overall."""
    rng = random.Random(seed)
    items = list(range(rng.randint(0, 60)))
    source = TestingSource(items, parallel=True, batch_size=rng.randint(1, 4))
    emitted: Counter[int] = Counter()
    snaps: list[Any] | None = None
    for generation in range(3):
        last = generation == 2
        p = rng.randint(1, 5)
        new_snaps = []
        for i in range(p):
            with SourceReaderHarness(source, i, p, restored_state=snaps) as h:
                got = h.poll_all() if last else h.poll_all(max_batches=rng.randint(0, 6))
                emitted.update(got)
                new_snaps.append(h.snapshot())
        snaps = new_snaps
    assert sorted(emitted) == items
    assert all(n == 1 for n in emitted.values())


# -- inside jobs -----------------------------------------------------------------------------


@pytest.fixture(params=[1, 4], ids=["p1", "p4"])
def env(request: pytest.FixtureRequest) -> StreamExecutionEnvironment:
    e = StreamExecutionEnvironment.get_execution_environment()
    e.set_parallelism(request.param)
    e.set_batch_size(3)
    return e


@pytest.mark.parametrize("parallel", [False, True], ids=["single", "parallel"])
def test_eof_in_a_job(env: StreamExecutionEnvironment, parallel: bool) -> None:
    source = TestingSource([*range(20), EOF, 99], parallel=parallel)
    out = run_to_completion(env.from_source(source).map(lambda x: x + 1), timeout=10)
    assert sorted(out) == list(range(1, 21))


@pytest.mark.parametrize("parallel", [False, True], ids=["single", "parallel"])
def test_abort_fails_the_job_and_a_second_run_goes_through(
    env: StreamExecutionEnvironment, parallel: bool
) -> None:
    source = TestingSource([*range(10), ABORT, *range(10, 20)], parallel=parallel)
    sink: TestingSink[int] = TestingSink()
    env.from_source(source).map(lambda x: x).sink_to(sink)
    with pytest.raises(JobExecutionError, match="TestingSourceAborted") as info:
        run_to_completion(env, timeout=10)
    assert isinstance(info.value.__cause__, TestingSource.Aborted)
    assert info.value.operator == "TestingSource (20 items)"
    if not parallel:
        # nothing after the marker got out (in parallel, the other subtasks run on until the
        # job cancels them, as they would after a real crash of one subtask)
        assert set(sink.results) <= set(range(10))

    sink.clear()
    env.from_source(source).map(lambda x: x).sink_to(sink)
    run_to_completion(env, timeout=10)
    assert sorted(sink.results) == list(range(20))


def test_pause_in_a_job_delays_but_loses_nothing(env: StreamExecutionEnvironment) -> None:
    source = TestingSource([1, 2, PAUSE(0.2), 3], parallel=True)
    start = time.monotonic()
    out = run_to_completion(env.from_source(source), timeout=10)
    assert time.monotonic() - start >= 0.2
    assert sorted(out) == [1, 2, 3]
