"""Failures, cancellation, bad arguments and the custom source/sink API."""

import threading
import time
from typing import Any

import pytest

from strom import (
    InvalidJobError,
    JobCancelledError,
    JobExecutionError,
    JobStatus,
    StreamExecutionEnvironment,
)
from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    ParallelSourceFunction,
    RichParallelSourceFunction,
    RichSinkFunction,
    RuntimeContext,
    SinkContext,
    SourceContext,
    SourceFunction,
)
from strom.state import ListStateDescriptor


def new_env(parallelism: int = 1) -> StreamExecutionEnvironment:
    return StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_user_exception_fails_job_naming_operator_subtask_record_and_traceback(
    parallelism: int,
) -> None:
    env = new_env(parallelism)

    def explode(x: int) -> float:
        return 1 / (x - 13)

    env.from_collection(range(30)).rebalance().map(explode).name("divide").print()
    with pytest.raises(JobExecutionError) as info:
        env.execute("boom")
    err = info.value
    assert err.operator == "divide"
    assert 0 <= err.subtask < parallelism
    text = str(err)
    assert "operator 'divide'" in text
    assert f"/{parallelism})" in text
    assert "on record 13" in text
    assert "ZeroDivisionError" in text
    assert "in explode" in err.task_traceback  # the user's frame is in the original traceback
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_failure_in_sink_function_is_reported() -> None:
    class Bad(RichSinkFunction[int]):
        def invoke(self, value: int, context: SinkContext) -> None:
            if value == 3:
                raise RuntimeError("disk full")

    env = new_env()
    env.from_collection(range(5)).add_sink(Bad())
    with pytest.raises(JobExecutionError, match="disk full") as info:
        env.execute()
    assert info.value.operator == "Sink: Bad"


class Endless(SourceFunction[int]):
    """Collects forever; cooperative: stops when cancel() is called."""

    def __init__(self) -> None:
        self.running = True

    def run(self, ctx: SourceContext[int]) -> None:
        i = 0
        while self.running:
            with ctx.get_checkpoint_lock():
                ctx.collect(i)
                i += 1
            if i % 100 == 0:
                time.sleep(0.001)

    def cancel(self) -> None:
        self.running = False


class IgnoresCancel(SourceFunction[int]):
    """Never checks a flag: must still stop, because collect() raises once cancelled."""

    def run(self, ctx: SourceContext[int]) -> None:
        i = 0
        while True:
            ctx.collect(i)
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)

    def cancel(self) -> None:
        pass


@pytest.mark.parametrize("source", [Endless, IgnoresCancel])
def test_cancel_stops_an_endless_job_promptly(source: type[SourceFunction[int]]) -> None:
    env = new_env(2)
    env.add_source(source()).map(lambda x: x).key_by(lambda x: x % 5).sum().print()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        client = env.execute_async("endless")
        deadline = time.monotonic() + 5
        while client.get_job_status() is not JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        start = time.monotonic()
        client.cancel()
        with pytest.raises(JobCancelledError):
            client.wait(timeout=10)
    assert time.monotonic() - start < 3
    assert client.get_job_status() is JobStatus.CANCELED


def test_execute_and_collect_limit_cancels_an_unbounded_job() -> None:
    env = new_env()
    start = time.monotonic()
    out = env.add_source(Endless()).execute_and_collect(limit=50)
    assert out == list(range(50))
    assert time.monotonic() - start < 5


def test_job_client_reports_status_and_metrics() -> None:
    env = new_env()
    env.from_collection(range(100)).map(lambda x: x).print()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        client = env.execute_async("m")
        result = client.wait(timeout=10)
    assert client.get_job_status() is JobStatus.FINISHED
    assert result.metrics["Collection Source"]["records_out"] == 100
    assert result.net_runtime_ms >= 0


class RangeSource(RichParallelSourceFunction[int], CheckpointedFunction):
    """Seed §3.2: splits [0, n) by subtask index and keeps its position in list state."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.running = True
        self.next = -1

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self.state = ctx.get_operator_state_store().get_list_state(
            ListStateDescriptor[int]("position")
        )
        self.restored = ctx.is_restored()

    def open(self, runtime_context: RuntimeContext) -> None:
        self.index = runtime_context.get_index_of_this_subtask()
        self.step = runtime_context.get_number_of_parallel_subtasks()
        if self.next < 0:
            self.next = self.index

    def run(self, ctx: SourceContext[int]) -> None:
        while self.running and self.next < self.n:
            with ctx.get_checkpoint_lock():
                ctx.collect(self.next)
                self.next += self.step

    def cancel(self) -> None:
        self.running = False

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        self.state.update([self.next])


@pytest.mark.parametrize("parallelism", [1, 4])
def test_parallel_source_function_splits_by_subtask(parallelism: int) -> None:
    env = new_env(parallelism)
    out = env.add_source(RangeSource(1000)).execute_and_collect(limit=2000)
    assert sorted(out) == list(range(1000))


def test_non_parallel_source_function_runs_once_even_at_parallelism_4() -> None:
    class Five(SourceFunction[int]):
        def run(self, ctx: SourceContext[int]) -> None:
            for i in range(5):
                ctx.collect(i)

        def cancel(self) -> None:
            pass

    env = new_env(4)
    stream = env.add_source(Five())
    assert sorted(stream.execute_and_collect(limit=100)) == [0, 1, 2, 3, 4]
    with pytest.raises(InvalidJobError, match="at most 1 subtask"):
        new_env().add_source(Five()).set_parallelism(2)


def test_source_function_timestamps_and_watermarks_reach_process_functions() -> None:
    from strom.functions import ProcessFunction

    class Timed(SourceFunction[str]):
        def run(self, ctx: SourceContext[str]) -> None:
            ctx.collect_with_timestamp("a", 1000)
            ctx.emit_watermark(1000)
            ctx.collect("untimed")
            ctx.collect_with_timestamp("b", 2000)

        def cancel(self) -> None:
            pass

    class See(ProcessFunction[str, Any]):
        def process_element(self, value: str, ctx: ProcessFunction.Context) -> Any:
            yield (value, ctx.timestamp())

    out = new_env().add_source(Timed()).process(See()).execute_and_collect(limit=3)
    assert out == [("a", 1000), ("untimed", None), ("b", 2000)]


def test_sink_function_lifecycle() -> None:
    events: list[Any] = []
    lock = threading.Lock()

    class Recording(RichSinkFunction[int]):
        def __deepcopy__(self, memo: Any) -> "Recording":
            return self  # share the event list between subtasks for the test

        def open(self, runtime_context: RuntimeContext) -> None:
            with lock:
                events.append(("open", runtime_context.get_index_of_this_subtask()))

        def invoke(self, value: int, context: SinkContext) -> None:
            with lock:
                events.append(("invoke", value))

        def finish(self) -> None:
            with lock:
                events.append(("finish",))

        def close(self) -> None:
            with lock:
                events.append(("close",))

    env = new_env(2)
    env.from_collection(range(6)).add_sink(Recording())
    env.execute()
    assert sorted(e[1] for e in events if e[0] == "open") == [0, 1]
    assert sorted(e[1] for e in events if e[0] == "invoke") == list(range(6))
    assert [e for e in events if e[0] in ("finish", "close")] == [("finish",), ("close",)] * 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda env: env.set_parallelism(0), "parallelism must be a positive integer"),
        (lambda env: env.set_parallelism(-2), "parallelism must be a positive integer"),
        (lambda env: env.set_max_parallelism(0), "max parallelism must be a positive"),
        (lambda env: env.from_collection([1]).map(abs).set_parallelism(-1), "positive integer"),
        (lambda env: env.from_collection([1]).map(42), "map expects a callable"),
        (lambda env: env.from_collection([1]).key_by("field"), "key_by expects a callable"),
        (lambda env: env.from_collection("abc"), "expects a collection of elements"),
        (lambda env: env.from_collection([1]).add_sink(print), "add_sink expects a SinkFunction"),
        (lambda env: env.from_source([1, 2]), "from_source expects"),
        (lambda env: env.execute(), "no sinks defined"),
    ],
)
def test_invalid_arguments_fail_at_build_time_with_clear_messages(build: Any, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        build(new_env())


def test_forward_between_unequal_parallelism_is_rejected() -> None:
    env = new_env(2)
    env.from_collection([1]).map(abs).set_parallelism(2).forward().map(abs).set_parallelism(
        3
    ).print()
    with pytest.raises(InvalidJobError, match=r"forward partitioning .* needs equal parallelism"):
        env.execute()


def test_duplicate_uids_are_rejected() -> None:
    env = new_env()
    env.from_collection([1]).map(abs).uid("x").map(abs).uid("x").print()
    with pytest.raises(InvalidJobError, match="duplicated: x"):
        env.execute()


def test_parallelism_above_max_parallelism_is_rejected() -> None:
    env = new_env(8).set_max_parallelism(4)
    env.from_collection([1]).map(abs).print()
    with pytest.raises(InvalidJobError, match="exceeds max parallelism 4"):
        env.execute()


def test_checkpointed_function_is_initialized_before_open() -> None:
    order: list[str] = []

    class Src(ParallelSourceFunction[int], CheckpointedFunction):
        def __deepcopy__(self, memo: Any) -> "Src":
            return self

        def initialize_state(self, ctx: FunctionInitializationContext) -> None:
            order.append(f"init restored={ctx.is_restored()}")

        def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
            order.append("snapshot")

        def open(self, runtime_context: RuntimeContext) -> None:
            order.append("open")

        def run(self, ctx: SourceContext[int]) -> None:
            ctx.collect(1)

        def cancel(self) -> None:
            pass

    assert new_env().add_source(Src()).execute_and_collect(limit=5) == [1]
    assert order == ["init restored=False", "open"]


def test_source_function_that_swallows_downstream_errors_still_fails_the_job() -> None:
    class Swallowing(SourceFunction[int]):
        def run(self, ctx: SourceContext[int]) -> None:
            for i in range(100):
                try:
                    with ctx.get_checkpoint_lock():
                        ctx.collect(i)
                except Exception:
                    continue  # bad user code: must not turn a failure into silent loss

        def cancel(self) -> None:
            pass

    def boom(x: int) -> int:
        if x == 10:
            raise ValueError("bad record")
        return x

    env = new_env()
    env.set_batch_size(1)
    env.add_source(Swallowing()).map(boom).print()
    with pytest.raises(JobExecutionError, match="bad record"):
        env.execute()


def test_sink_metrics_count_each_record_once() -> None:
    from strom.testing import TestingSink

    env = new_env(2)
    env.from_collection(range(40)).rebalance().sink_to(TestingSink()).name("out")
    result = env.execute()
    assert result.metrics["out"]["records_in"] == 40
