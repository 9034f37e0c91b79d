"""E2E job: count words from a chosen source, with checkpoints, into the chosen sinks.

    strom run keyed_count.py -- SOURCE WORKDIR [--fail-at N]

SOURCE is collection | file | function. Input words are WORDS (below); the file source reads
WORKDIR/input, the function source is a ``StridedSource`` (strided_source.py). Output:
WORKDIR/counts.txt (text sink, at-least-once) and, when available, WORKDIR/parts (rolling file
sink, exactly-once). Checkpoints go to WORKDIR/ckpt.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from strided_source import StridedSource

from strom import StreamExecutionEnvironment
from strom.functions import MapFunction
from strom.runtime.restart import RestartStrategies
from strom.testing import fail_once_at

WORDS = [f"w{(i * 7919) % 23}" for i in range(12_000)]


class Pace(MapFunction[str, str]):
    """Slows the job down so a kill lands mid-stream, with checkpoints before it."""

    def map(self, value: str) -> str:
        if random.random() < 0.06:
            time.sleep(0.005)
        return value


def to_pair(word: str) -> tuple[str, int]:
    return (word, 1)


def first(pair: tuple[str, int]) -> str:
    return pair[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source", choices=["collection", "file", "function"])
    ap.add_argument("workdir")
    ap.add_argument("--fail-at", type=int, default=0)
    ap.add_argument("--file-sink", action="store_true")
    args = ap.parse_args()

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_batch_size(50)
    env.enable_checkpointing(40)
    env.get_checkpoint_config().set_checkpoint_storage_dir(f"{args.workdir}/ckpt")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    stream: Any
    if args.source == "collection":
        stream = env.from_collection(WORDS)
    elif args.source == "file":
        stream = env.read_text_file(f"{args.workdir}/input")
    else:
        stream = env.add_source(StridedSource(WORDS))
    stream = stream.uid("source").map(Pace()).uid("pace")
    if args.fail_at:
        stream = stream.map(fail_once_at(args.fail_at)).uid("fail")
    counts = stream.map(to_pair).uid("pairs").key_by(first).sum(1).uid("counts")
    counts.write_as_text(f"{args.workdir}/counts.txt").uid("text-sink")
    if args.file_sink:
        from strom.connectors.filesystem import FileSink, OnCheckpointRollingPolicy

        counts.map(lambda p: f"{p[0]},{p[1]}").uid("fmt").sink_to(
            FileSink(f"{args.workdir}/parts", rolling_policy=OnCheckpointRollingPolicy())
        ).uid("file-sink")
    env.execute("e2e-keyed-count")


if __name__ == "__main__":
    main()
