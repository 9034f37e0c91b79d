"""Checkpoints on S3 (a moto server on 127.0.0.1): recovery, restore from latest, integrity."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from strom import JobExecutionError, StreamExecutionEnvironment
from strom.runtime.checkpoint import ExternalizedCheckpointRetention
from strom.runtime.checkpoint.storage import find_latest, load
from strom.runtime.restart import RestartStrategies
from strom.testing import TestingSink, fail_once_at

pytestmark = pytest.mark.integration

WORDS = [f"w{i % 11}" for i in range(3000)]


def options(endpoint: str) -> dict[str, Any]:
    return {"client_kwargs": {"endpoint_url": endpoint}}


@pytest.fixture
def bucket(moto_s3: str, request: pytest.FixtureRequest) -> str:
    import fsspec

    name = f"ckpt-{abs(hash(request.node.name)) % 10**8}"
    fsspec.filesystem("s3", **options(moto_s3)).mkdir(name)
    return name


def counting_job(endpoint: str, bucket: str, parallelism: int, fail_at: int | None) -> Any:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(30)
    env.enable_checkpointing(30)
    config = env.get_checkpoint_config()
    config.set_checkpoint_storage_dir(f"s3://{bucket}/checkpoints", **options(endpoint))
    config.set_externalized_checkpoint_retention(
        ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
    )
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    sink: TestingSink[Any] = TestingSink()
    stream = env.from_collection(WORDS).uid("words")
    if fail_at is not None:
        stream = stream.map(fail_once_at(fail_at)).uid("fail")
    stream.map(lambda w: (w, 1)).uid("pairs").key_by(lambda t: t[0]).sum(1).uid("counts").sink_to(
        sink
    ).uid("sink")
    return env, sink


@pytest.mark.parametrize("parallelism", [1, 3])
def test_recovery_from_checkpoints_on_s3(moto_s3: str, bucket: str, parallelism: int) -> None:
    env, sink = counting_job(moto_s3, bucket, parallelism, fail_at=1200 // parallelism)
    client = env.execute_async("s3-counts")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    final: dict[str, int] = {}
    for w, c in sink.results:
        final[w] = max(final.get(w, 0), c)
    assert final == dict(Counter(WORDS))
    latest = find_latest(f"s3://{bucket}/checkpoints", "s3-counts", options(moto_s3))
    assert latest is not None
    assert latest.startswith("s3://")
    restored = load(latest, options(moto_s3))
    assert "counts" in restored.operators


def test_restore_latest_from_s3_and_corruption_is_named(moto_s3: str, bucket: str) -> None:
    import fsspec

    env, _ = counting_job(moto_s3, bucket, 1, fail_at=None)
    env.execute("s3-restore")
    latest = find_latest(f"s3://{bucket}/checkpoints", "s3-restore", options(moto_s3))
    assert latest is not None

    env2, sink = counting_job(moto_s3, bucket, 2, fail_at=None)
    env2.restore_from("latest")  # resolved in the job's S3 checkpoint storage
    env2.execute("s3-restore")
    assert sink.results == []  # the restored source had read everything already

    fs = fsspec.filesystem("s3", **options(moto_s3))
    state = sorted(p for p in fs.find(latest.removeprefix("s3://")) if p.endswith(".state"))[0]
    fs.pipe_file(state, b"garbage")
    env3, _ = counting_job(moto_s3, bucket, 1, fail_at=None)
    env3.restore_from(latest)
    with pytest.raises(JobExecutionError, match="state file is corrupt"):
        env3.execute("s3-restore")
