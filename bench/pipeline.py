"""CPU-bound pipeline: parse JSON -> filter -> map -> key_by(api) -> rolling reduce.

The hand-written loop does the same work in plain Python (the ceiling for any Python engine);
the engine runs the same functions through ``StreamExecutionEnvironment``.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import orjson

from strom import StreamExecutionEnvironment
from strom.connectors.base import Sink, SinkWriter, WriterContext


def is_ok(r: dict[str, Any]) -> bool:
    return r["status"] < 500  # type: ignore[no-any-return]


def project(r: dict[str, Any]) -> tuple[str, int, int]:
    return (r["api"], r["latency_ms"], 1)


def api_of(m: tuple[str, int, int]) -> str:
    return m[0]


def combine(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, int, int]:
    return (a[0], a[1] + b[1], a[2] + b[2])


def plain_loop(lines: list[bytes]) -> dict[str, tuple[str, int, int]]:
    """What a careful engineer writes by hand: one pass, a dict per key."""
    loads = orjson.loads
    state: dict[str, tuple[str, int, int]] = {}
    for line in lines:
        r = loads(line)
        if r["status"] >= 500:
            continue
        m = (r["api"], r["latency_ms"], 1)
        k = m[0]
        acc = state.get(k)
        state[k] = m if acc is None else (k, acc[1] + m[1], acc[2] + m[2])
    return state


class LastPerKeySink(Sink[tuple[str, int, int]]):
    """Keeps the latest aggregate per key, so both variants end with the same dict."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[str, int, int]] = {}

    def create_writer(self, ctx: WriterContext) -> SinkWriter[tuple[str, int, int]]:
        state = self.state

        class _W(SinkWriter[tuple[str, int, int]]):
            def write(self, values: list[tuple[str, int, int]], timestamps: Any) -> None:
                for v in values:
                    state[v[0]] = v

        return _W()


def engine(
    lines: list[bytes],
    parallelism: int,
    checkpoint_ms: int = 0,
    storage: str = "",
    state_backend: str = "heap",
) -> dict[str, tuple[str, int, int]]:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    if state_backend != "heap":
        env.set_state_backend(state_backend, directory=storage)
    if checkpoint_ms:
        env.enable_checkpointing(checkpoint_ms)
        env.get_checkpoint_config().set_checkpoint_storage_dir(storage)
    sink = LastPerKeySink()
    (
        env.from_collection(lines)
        .map(orjson.loads)
        .filter(is_ok)
        .map(project)
        .key_by(api_of)
        .reduce(combine)
        .sink_to(sink)
    )
    env.execute("bench-pipeline")
    return sink.state


def run(variant: str, lines: list[bytes]) -> tuple[float, dict[str, Any]]:
    """Variants: ``plain``, ``strom-pN``, ``strom-pN-ckptMS`` (checkpoint every MS ms),
    ``strom-pN-disk[-ckptMS]`` (keyed state on the disk backend)."""
    start = time.process_time()
    if variant == "plain":
        result = plain_loop(lines)
    else:
        backend = "disk" if "-disk" in variant else "heap"
        parts = variant.removeprefix("strom-p").replace("-disk", "").split("-ckpt")
        interval = int(parts[1]) if len(parts) > 1 else 0
        with tempfile.TemporaryDirectory() as storage:
            result = engine(lines, int(parts[0]), interval, storage, backend)
    return time.process_time() - start, result
