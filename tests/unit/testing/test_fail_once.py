"""FailOnce: the job fails once, naming the operator; a rerun (a restart) goes through."""

from __future__ import annotations

import copy

import pytest

from strom import JobExecutionError, StreamExecutionEnvironment
from strom.testing import (
    FailOnce,
    InjectedFailure,
    TestingSink,
    TestingSource,
    fail_once_at,
    run_to_completion,
)


@pytest.fixture(params=[1, 4], ids=["p1", "p4"])
def env(request: pytest.FixtureRequest) -> StreamExecutionEnvironment:
    e = StreamExecutionEnvironment.get_execution_environment()
    e.set_parallelism(request.param)
    e.set_batch_size(4)
    return e


def test_fails_the_job_once_naming_the_operator(env: StreamExecutionEnvironment) -> None:
    failure = fail_once_at(10)
    sink: TestingSink[int] = TestingSink()
    source = TestingSource(range(100), parallel=True)
    env.from_source(source).map(failure).name("crash here").sink_to(sink)
    with pytest.raises(JobExecutionError, match="'crash here'") as info:
        run_to_completion(env, timeout=10)
    assert info.value.operator == "crash here"
    assert isinstance(info.value.__cause__, InjectedFailure)
    assert "InjectedFailure: injected failure at record 10 of subtask" in str(info.value)
    assert failure.has_failed

    # the job built again from the same function object (as a restart does) does not fail
    sink.clear()
    env.from_source(source).map(failure).name("crash here").sink_to(sink)
    run_to_completion(env, timeout=10)
    assert sorted(sink.results) == list(range(100))


def test_passes_records_before_the_failing_one() -> None:
    fn = FailOnce[str](3)
    fn.open(_Ctx())
    assert [fn.map("a"), fn.map("b")] == ["a", "b"]
    with pytest.raises(InjectedFailure, match="record 3 of subtask 2"):
        fn.map("c")
    assert fn.map("d") == "d"
    fn.reset()
    assert not fn.has_failed


def test_copies_count_their_own_records_but_fail_only_once() -> None:
    original = FailOnce[int](2)
    a, b = copy.deepcopy(original), copy.deepcopy(original)
    a.open(_Ctx())
    b.open(_Ctx())
    assert a.map(1) == 1
    assert b.map(1) == 1  # b's first record: counts are per copy
    with pytest.raises(InjectedFailure):
        b.map(2)
    assert a.map(2) == 2  # a reaches the count too, but the shared trigger has fired
    assert original.has_failed


def test_custom_exception_class_or_instance() -> None:
    fn = FailOnce[int](1, ConnectionResetError)
    with pytest.raises(ConnectionResetError, match="injected failure at record 1"):
        fn.map(0)
    error = TimeoutError("broker timed out")
    fn2 = copy.deepcopy(FailOnce[int](1, error))
    with pytest.raises(TimeoutError) as info:
        fn2.map(0)
    assert info.value is error


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="at_record"):
        FailOnce(0)
    with pytest.raises(TypeError, match="exception"):
        FailOnce(1, "boom")  # type: ignore[arg-type]


class _Ctx:
    def get_index_of_this_subtask(self) -> int:
        return 2
