"""The failure tools inside jobs that checkpoint and restart: each injected failure happens once,
the restarted job gets past it, and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom import StreamExecutionEnvironment
from strom.runtime.restart import RestartStrategies
from strom.testing import TestingSink, TestingSource, fail_once_at, run_to_completion


@pytest.mark.parametrize("parallelism", [1, 4])
def test_abort_and_fail_once_each_fire_once_and_the_job_recovers(
    tmp_path: Path, parallelism: int
) -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(5)
    env.enable_checkpointing(10)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(2, 0))
    pause = TestingSource.PAUSE
    # the pauses give checkpoints time to complete, so restarts resume mid-stream
    items = [
        *range(40),
        pause(0.05),
        TestingSource.ABORT,
        *range(40, 80),
        pause(0.05),
        *range(80, 120),
    ]
    source = TestingSource(items, batch_size=5)
    failure = fail_once_at(15)
    sink: TestingSink[int] = TestingSink()
    env.from_source(source).rebalance().map(failure).sink_to(sink)

    run_to_completion(env, timeout=20)

    assert failure.has_failed
    # at-least-once sink: replays after a restart may duplicate, but nothing is missing
    assert set(sink.results) == set(range(120))
