"""The rolling FileSink on S3 (a moto server on 127.0.0.1): multipart uploads as
transactions, recovery of pre-committed uploads, removal of dangling ones, and a whole job
with an injected failure writing every record exactly once."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from strom import StreamExecutionEnvironment
from strom.connectors.base import WriterContext
from strom.connectors.filesystem import BasePathBucketAssigner, FileSink, FileSinkWriter
from strom.errors import ConnectorError
from strom.runtime.restart import RestartStrategies
from strom.testing import ManualClock, fail_once_at

pytestmark = pytest.mark.integration

BUCKET = "strom-file-sink"


@pytest.fixture(scope="session")
def s3_endpoint(moto_s3: str) -> str:
    """The session's moto S3 server (``tests/integration/conftest.py``) with this file's bucket."""
    try:
        import s3fs  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as e:
        pytest.skip(f"S3 tests need s3fs (pip install -e '.[s3]'): {e}")
    s3(moto_s3).mkdir(BUCKET)
    return moto_s3


def options(endpoint: str) -> dict[str, Any]:
    return {"client_kwargs": {"endpoint_url": endpoint}}


def s3(endpoint: str) -> Any:
    import fsspec

    return fsspec.filesystem("s3", **options(endpoint))


@pytest.fixture
def prefix(s3_endpoint: str) -> str:
    """A fresh key prefix for each test."""
    return f"{BUCKET}/t-{uuid.uuid4().hex[:12]}"


def sink_at(endpoint: str, prefix: str, **kwargs: Any) -> FileSink:
    kwargs.setdefault("bucket_assigner", BasePathBucketAssigner())
    return FileSink(f"s3://{prefix}", storage_options=options(endpoint), **kwargs)


def open_writer(
    sink: FileSink, state: list[Any] | None = None, subtask: int = 0, parallelism: int = 1
) -> FileSinkWriter:
    w = sink.create_writer(
        WriterContext(subtask_index=subtask, parallelism=parallelism, processing_time=ManualClock())
    )
    w.open(state)
    return w


def objects(endpoint: str, prefix: str) -> dict[str, bytes]:
    fs = s3(endpoint)
    fs.invalidate_cache()
    return {p[len(prefix) + 1 :]: fs.cat(p) for p in fs.find(prefix)}


def uploads(endpoint: str, prefix: str) -> list[tuple[str, str]]:
    bucket, _, key = prefix.partition("/")
    reply = s3(endpoint).call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key + "/")
    return sorted((u["Key"][len(key) + 1 :], u["UploadId"]) for u in reply.get("Uploads", []))


def test_objects_appear_only_when_the_checkpoint_completes(s3_endpoint: str, prefix: str) -> None:
    w = open_writer(sink_at(s3_endpoint, prefix))
    w.write(["a", "b"], None)
    assert uploads(s3_endpoint, prefix) == []  # still in memory: nothing on S3 yet
    w.snapshot_state(1)
    assert objects(s3_endpoint, prefix) == {}
    assert [k for k, _ in uploads(s3_endpoint, prefix)] == ["part-0-0"]  # pre-committed
    w.write(["c"], None)
    w.notify_checkpoint_complete(1)
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"a\nb\n"}
    assert uploads(s3_endpoint, prefix) == []
    w.close()  # the open part was never uploaded: nothing to clean up
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"a\nb\n"}
    assert uploads(s3_endpoint, prefix) == []


def test_large_parts_are_uploaded_in_pieces(s3_endpoint: str, prefix: str) -> None:
    w = open_writer(sink_at(s3_endpoint, prefix, bucket_assigner=lambda v, c: "big"))
    record = "x" * (1024 * 1024 - 1)  # 1 MiB with the newline
    for _ in range(7):
        w.write([record], None)
    assert len(uploads(s3_endpoint, prefix)) == 1  # the first 5 MiB went up as part 1
    state = w.snapshot_state(1)
    parts = state[0][1]["parts"][0]["parts"]
    assert [n for n, _ in parts] == [1, 2]
    w.notify_checkpoint_complete(1)
    w.close()
    assert objects(s3_endpoint, prefix) == {"big/part-0-0": (record + "\n").encode() * 7}


def test_pre_committed_upload_is_completed_on_recovery(s3_endpoint: str, prefix: str) -> None:
    sink = sink_at(s3_endpoint, prefix)
    w = open_writer(sink)
    w.write(["kept"], None)
    state = w.snapshot_state(1)  # checkpoint 1 completes, the process dies before notify
    assert objects(s3_endpoint, prefix) == {}
    r = open_writer(sink, state)
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"kept\n"}
    assert r.next_counter == 1
    r.close()
    open_writer(sink, state).close()  # completed already: idempotent
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"kept\n"}
    assert uploads(s3_endpoint, prefix) == []


def test_dangling_uploads_are_aborted_after_the_first_checkpoint(
    s3_endpoint: str, prefix: str
) -> None:
    sink = sink_at(s3_endpoint, prefix)
    w = open_writer(sink, subtask=0, parallelism=2)
    w.write(["kept"], None)
    state = w.snapshot_state(1)
    w.write(["lost"], None)
    w.snapshot_state(2)  # pre-committed, but checkpoint 2 never completes: dangles
    bucket, _, key = prefix.partition("/")
    client = s3(s3_endpoint)
    for name in ("part-0-9", "part-1-3", "other-0-1"):  # uploads of crashed attempts / others
        client.call_s3("create_multipart_upload", Bucket=bucket, Key=f"{key}/{name}")
    assert [k for k, _ in uploads(s3_endpoint, prefix)] == [
        "other-0-1", "part-0-0", "part-0-1", "part-0-9", "part-1-3"
    ]  # fmt: skip

    r = open_writer(sink, state, subtask=0, parallelism=2)  # the job restarts from checkpoint 1
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"kept\n"}
    assert r.next_counter == 10  # past the dangling upload's name
    r.write(["replayed"], None)
    r.snapshot_state(3)
    r.notify_checkpoint_complete(3)
    # subtask 0 of 2 aborted what subtask 0 left; subtask 1's and foreign uploads stay
    assert [k for k, _ in uploads(s3_endpoint, prefix)] == ["other-0-1", "part-1-3"]
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"kept\n", "part-0-10": b"replayed\n"}
    r.close()


def test_commit_refuses_to_replace_an_existing_object(s3_endpoint: str, prefix: str) -> None:
    w = open_writer(sink_at(s3_endpoint, prefix))
    w.write(["mine"], None)
    w.snapshot_state(1)
    s3(s3_endpoint).pipe(f"{prefix}/part-0-0", b"someone else's\n")
    with pytest.raises(ConnectorError, match="already exists"):
        w.notify_checkpoint_complete(1)
    w.close()
    assert objects(s3_endpoint, prefix) == {"part-0-0": b"someone else's\n"}


def test_missing_bucket_fails_at_open_naming_it(s3_endpoint: str) -> None:
    sink = FileSink("s3://no-such-bucket/out", storage_options=options(s3_endpoint))
    with pytest.raises(ConnectorError, match=r"bucket 'no-such-bucket' of base path 's3://no-"):
        open_writer(sink)


N = 2000


@pytest.mark.e2e
@pytest.mark.parametrize("parallelism", [1, 4])
def test_job_with_a_failure_writes_every_record_exactly_once(
    s3_endpoint: str, prefix: str, tmp_path: Path, parallelism: int
) -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(25)
    env.enable_checkpointing(50)  # every checkpoint costs a few S3 requests per part
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    # A checkpoint that hangs is aborted soon and the next one commits its parts: a race in
    # CheckpointCoordinator.acknowledge can leave a fully acknowledged checkpoint pending.
    env.get_checkpoint_config().set_checkpoint_timeout(2000)
    env.get_checkpoint_config().set_tolerable_checkpoint_failure_number(5)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    fail_at = random.randrange(N // 4, 3 * N // 4) // parallelism
    (
        env.from_collection(range(N))
        .rebalance()
        .map(fail_once_at(fail_at))
        .map(_slow_now_and_then)
        .sink_to(sink_at(s3_endpoint, prefix, bucket_assigner=lambda v, c: f"mod{v % 2}"))
    )
    client = env.execute_async("file-sink-s3")
    client.wait(60)
    assert client.restarts == 1  # type: ignore[attr-defined]
    found = objects(s3_endpoint, prefix)
    assert all(name.split("/")[1].startswith("part-") for name in found)
    records = Counter(line for data in found.values() for line in data.decode().splitlines())
    assert records == Counter(str(v) for v in range(N))  # every record exactly once
    assert uploads(s3_endpoint, prefix) == []  # nothing dangling


def _slow_now_and_then(v: int) -> int:
    if v % 5 == 0:  # the job takes a while: checkpoints complete before and after the failure
        time.sleep(0.001)
    return v
