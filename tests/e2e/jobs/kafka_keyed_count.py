"""E2E job: Kafka → keyed word counts → Kafka, with checkpoints.

    strom run kafka_keyed_count.py -- BOOTSTRAP IN_TOPIC OUT_TOPIC WORKDIR GUARANTEE PREFIX

Reads IN_TOPIC from the earliest offsets until an ``END`` record in every partition (an
end-of-stream marker, so the job exercises the deserializer's end of stream), counts words
per key and writes one record per update to OUT_TOPIC: key = the word, value = "word,count".
GUARANTEE is at_least_once or exactly_once (transactional ids start with PREFIX).
Checkpoints go to WORKDIR/ckpt.
"""

from __future__ import annotations

import argparse
import random
import time

from strom import StreamExecutionEnvironment
from strom.connectors.kafka import KafkaSource, StartupMode
from strom.connectors.kafka.sink import KafkaSink, KeyHashPartitioner, ProducerRecord
from strom.formats import SimpleStringSchema
from strom.functions import MapFunction
from strom.runtime.restart import RestartStrategies


class Pace(MapFunction[str, str]):
    """Slows the job down so a kill lands mid-stream, with checkpoints before it."""

    def map(self, value: str) -> str:
        if random.random() < 0.06:
            time.sleep(0.005)
        return value


class Words(SimpleStringSchema):
    """Strings; ``END`` ends its partition (seed 3.8's ``is_end_of_stream``)."""

    def is_end_of_stream(self, next_element: str) -> bool:
        return next_element == "END"


def to_pair(word: str) -> tuple[str, int]:
    return (word, 1)


def first(pair: tuple[str, int]) -> str:
    return pair[0]


def to_record(pair: tuple[str, int]) -> ProducerRecord:
    return ProducerRecord(key=pair[0], value=f"{pair[0]},{pair[1]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "workdir", "guarantee", "prefix"):
        ap.add_argument(name)
    args = ap.parse_args()

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_batch_size(50)
    env.enable_checkpointing(40)
    env.get_checkpoint_config().set_checkpoint_storage_dir(f"{args.workdir}/ckpt")
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 0))
    source = KafkaSource(
        bootstrap_servers=args.bootstrap,
        topics=[args.in_topic],
        group_id=f"{args.prefix}-group",
        startup_mode=StartupMode.EARLIEST,
        deserializer=Words(),
    )
    sink: KafkaSink[tuple[str, int]] = KafkaSink(
        args.bootstrap,
        args.out_topic,
        record_serializer=to_record,
        partitioner=KeyHashPartitioner(),
        delivery_guarantee=args.guarantee,
        transactional_id_prefix=args.prefix,
    )
    (
        env.from_source(source, source_name="words")
        .uid("source")
        .map(Pace())
        .uid("pace")
        .map(to_pair)
        .uid("pairs")
        .key_by(first)
        .sum(1)
        .uid("counts")
        .sink_to(sink)
        .uid("kafka-sink")
    )
    env.execute("e2e-kafka-keyed-count")


if __name__ == "__main__":
    main()
