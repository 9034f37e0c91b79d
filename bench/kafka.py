"""Kafka → Kafka workloads, strom next to a hand-written confluent-kafka loop, same run.

    python -m bench kafka [--records 1000000] [--repeat 1]      # W1 and W2 on Tansu
    python -m bench kafka-eo [--records 100000] [--repeat 2]    # exactly-once cost, noida-db
    STROM_BENCH_BROKER=tansu python -m bench kafka-eo --records 1000000   # the same at volume

* **W1**: JSON access-log records in a 4-partition topic → parse → filter (status < 500) →
  map to a smaller JSON document → produce.
* **W2**: → key by api → 1-minute tumbling event-time windows → count, success rate, average
  latency → produce one JSON document per (api, minute).

Each variant reads the same input topic from the start and writes its own output topic; the
time is wall-clock from start until every output record is acknowledged. The input ends with an
``"END"`` record in every partition, which both the job (``is_end_of_stream``) and the loop
stop at (the same stop condition for both, with no end-offset lookup in the timed part).
Output record counts must agree between variants. Brokers come from the Kafka test suite
(``tests/integration/kafka/brokers.py``).

``--repeat N`` runs N rounds of all variants (each round starting at another variant), waiting
for the broker to go idle before every run; the table shows the best and the median wall-time
ratio and the median CPU seconds of the job process and of the broker. On a shared two-core
machine a single ~1 s job varies by ±50%: compare medians of several rounds and CPU seconds.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "integration" / "kafka"))

PARTITIONS = 4
MINUTE = 60_000
VARIANTS = {
    "kafka": ["w1-loop", "w1-strom", "w2-loop", "w2-strom"],
    "kafka-eo": ["w1-strom-alo", "w1-strom-eo", "w2-strom-alo", "w2-strom-eo"],
}
END = b'"END"'


# -- the work, shared by both sides -----------------------------------------------------------


def is_ok(r: dict[str, Any]) -> bool:
    return r["status"] < 500  # type: ignore[no-any-return]


def slim(r: dict[str, Any]) -> bytes:
    return orjson.dumps({"api": r["api"], "ok": r["status"] < 400, "ms": r["latency_ms"]})


def window_doc(api: str, end: int, count: int, ok: int, latency: int) -> bytes:
    return orjson.dumps(
        {"api": api, "end": end, "count": count, "success": ok / count, "avg_ms": latency / count}
    )


# -- hand-written loops ---------------------------------------------------------------------------


def _consumer(bootstrap: str, topic: str) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 16 << 20,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    return c


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})


def _produce(producer: Producer, topic: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value)
            return
        except BufferError:
            producer.poll(0.05)


def loop_w1(bootstrap: str, src: str, out: str) -> int:
    consumer, producer = _consumer(bootstrap, src), _producer(bootstrap)
    loads, done, n = orjson.loads, set(), 0
    while len(done) < PARTITIONS:
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is not None or msg.partition() in done:
                continue
            value = msg.value()
            if value == END:
                done.add(msg.partition())
                continue
            r = loads(value)
            if r["status"] < 500:
                _produce(producer, out, slim(r))
                n += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    return n


def loop_w2(bootstrap: str, src: str, out: str) -> int:
    """Windows closed by the watermark = min over partitions of the highest timestamp seen."""
    consumer, producer = _consumer(bootstrap, src), _producer(bootstrap)
    loads, done, n = orjson.loads, set(), 0
    high = dict.fromkeys(range(PARTITIONS), -1)
    windows: dict[int, dict[str, list[int]]] = {}
    while len(done) < PARTITIONS:
        for msg in consumer.consume(1000, 0.5):
            p = msg.partition()
            if msg.error() is not None or p in done:
                continue
            value = msg.value()
            if value == END:
                done.add(p)
                high[p] = 2**62
                continue
            r = loads(value)
            ts = r["ts"]
            high[p] = max(high[p], ts)
            acc = windows.setdefault(ts - ts % MINUTE, {}).get(r["api"])
            if acc is None:
                acc = windows[ts - ts % MINUTE][r["api"]] = [0, 0, 0]
            acc[0] += 1
            acc[1] += r["status"] < 400
            acc[2] += r["latency_ms"]
        watermark = min(high.values())
        for start in sorted(w for w in windows if w + MINUTE <= watermark + 1):
            for api, (c, ok, lat) in windows.pop(start).items():
                _produce(producer, out, window_doc(api, start + MINUTE, c, ok, lat))
                n += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    return n


# -- strom ----------------------------------------------------------------------------------------


def strom_job(workload: str, bootstrap: str, src: str, out: str, guarantee: str, tmp: str) -> int:
    from strom import StreamExecutionEnvironment
    from strom.connectors.kafka import KafkaSource, StartupMode
    from strom.connectors.kafka.sink import KafkaSink
    from strom.eventtime import WatermarkStrategy
    from strom.formats import JsonSchema
    from strom.functions import AggregateFunction
    from strom.windowing import TumblingEventTimeWindows

    class Json(JsonSchema):
        def is_end_of_stream(self, next_element: Any) -> bool:
            return next_element == "END"

    class Stats(AggregateFunction[dict[str, Any], list[Any], bytes]):
        def create_accumulator(self) -> list[Any]:
            return [None, 0, 0, 0, 0]

        def add(self, r: dict[str, Any], acc: list[Any]) -> list[Any]:
            acc[0] = r["api"]
            acc[1] += 1
            acc[2] += r["status"] < 400
            acc[3] += r["latency_ms"]
            acc[4] = max(acc[4], r["ts"] - r["ts"] % MINUTE + MINUTE)
            return acc

        def get_result(self, acc: list[Any]) -> bytes:
            return window_doc(acc[0], acc[4], acc[1], acc[2], acc[3])

        def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
            return [a[0] or b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], max(a[4], b[4])]

    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(1)
    env.enable_checkpointing(1000)
    env.get_checkpoint_config().set_checkpoint_storage_dir(tmp)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[src],
        group_id=prefix,
        startup_mode=StartupMode.EARLIEST,
        deserializer=Json(),
    )
    sink: KafkaSink[bytes] = KafkaSink(
        bootstrap, out, delivery_guarantee=guarantee, transactional_id_prefix=prefix
    )
    if workload == "w1":
        env.from_source(source).filter(is_ok).map(slim).sink_to(sink)
    else:
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
            lambda r, _ts: r["ts"]
        )
        (
            env.from_source(source, strategy)
            .key_by(lambda r: r["api"])
            .window(TumblingEventTimeWindows.of(MINUTE))
            .aggregate(Stats())
            .sink_to(sink)
        )
    result = env.execute(f"bench-{workload}")
    return sum(
        int(m.get("records_out", 0))
        for op, m in result.metrics.items()
        if op.startswith("Kafka Sink")
    )


# -- the runner ------------------------------------------------------------------------------------


def load_input(bootstrap: str, records: int) -> str:
    from bench.data import access_log_lines

    topic = f"bench-in-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    lines = access_log_lines(records)
    for i, line in enumerate([*lines, *[END] * PARTITIONS]):
        while True:
            try:
                producer.produce(topic, line, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError("input not acknowledged")
    return topic


def _create(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def run_variant(variant: str, bootstrap: str, src: str, tmp: str) -> tuple[float, int]:
    out = f"bench-out-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, out, 1)
    workload = variant[:2]
    start = time.perf_counter()
    if variant.endswith("-loop"):
        n = (loop_w1 if workload == "w1" else loop_w2)(bootstrap, src, out)
    else:
        guarantee = "exactly_once" if variant.endswith("-eo") else "at_least_once"
        n = strom_job(workload, bootstrap, src, out, guarantee, f"{tmp}/{out}")
    return time.perf_counter() - start, n


def _warm_imports() -> None:
    """Import what ``strom_job`` uses before any variant is timed: otherwise the first strom
    variant pays about half a second of imports (with ``--repeat 1`` that skews its ratio)."""
    import strom.connectors.kafka
    import strom.connectors.kafka.sink.exactly_once
    import strom.connectors.kafka.sink.writer
    import strom.eventtime
    import strom.formats
    import strom.functions
    import strom.windowing  # noqa: F401


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _settle(pid: int, limit: float = 20.0) -> None:
    """Wait until the broker is idle: it keeps working for a second or so after a job (noida-db
    especially), which would otherwise be charged to the next variant."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.3)
        if _cpu_seconds(pid) - before < 0.015:
            return


def main(suite: str, records: int, repeat: int) -> list[dict[str, Any]]:
    """Runs the suite's variants in rounds — each round runs every variant once, starting at
    a different one — with the broker idle before each run; per variant the best and the
    median wall time, and the median CPU seconds of this process (the job and its clients'
    threads) and of the broker."""
    import statistics
    import tempfile

    from brokers import start_noida, start_tansu

    # kafka-eo runs on noida-db (faithful transactions); STROM_BENCH_BROKER=tansu measures the
    # same protocol cost at volume on Tansu.
    broker = os.environ.get("STROM_BENCH_BROKER") or ("noida" if suite == "kafka-eo" else "tansu")
    _warm_imports()
    proc = (start_noida if broker == "noida" else start_tansu)()
    variants = VARIANTS[suite]
    runs: dict[str, list[tuple[float, float, float, int]]] = {v: [] for v in variants}
    try:
        src = load_input(proc.bootstrap, records)
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(repeat):
                k = round_ % len(variants)
                for variant in variants[k:] + variants[:k]:
                    _settle(proc.pid)
                    cpu, broker_cpu = time.process_time(), _cpu_seconds(proc.pid)
                    seconds, n = run_variant(variant, proc.bootstrap, src, tmp)
                    cpu = time.process_time() - cpu
                    runs[variant].append((seconds, cpu, _cpu_seconds(proc.pid) - broker_cpu, n))
    finally:
        proc.stop()
    rows = []
    for variant, done in runs.items():
        best = min(r[0] for r in done)
        rows.append(
            {
                "variant": variant,
                "seconds": best,
                "records_per_s": records / best,
                "median_seconds": statistics.median(r[0] for r in done),
                "cpu_seconds": statistics.median(r[1] for r in done),
                "broker_cpu_seconds": statistics.median(r[2] for r in done),
                "output_records": done[-1][3],
                "broker": proc.name,
            }
        )
    return rows


def report(suite: str, records: int, repeat: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"suite: {suite}, {records:,} input records, {repeat} rounds, broker "
        f"{rows[0]['broker'] if rows else '?'}",
        "| variant | records/s (best) | ratio (best) | ratio (median) | job CPU s | broker CPU s "
        "| output records |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by_name = {r["variant"]: r for r in rows}
    for r in rows:
        base_name = r["variant"].rsplit("-", 1)[0] + ("-loop" if suite == "kafka" else "-alo")
        base = by_name.get(base_name, r)
        lines.append(
            f"| {r['variant']} | {r['records_per_s']:,.0f} | "
            f"{base['seconds'] / r['seconds']:.2f}x | "
            f"{base['median_seconds'] / r['median_seconds']:.2f}x | "
            f"{r['cpu_seconds']:.2f} | {r['broker_cpu_seconds']:.2f} | "
            f"{r['output_records']:,} |"
        )
    for w in ("w1", "w2"):
        counts = {r["output_records"] for r in rows if r["variant"].startswith(w)}
        if len(counts) > 1:
            lines.append(f"**{w}: variants disagree on the output count: {sorted(counts)}**")
    return "\n".join(lines)
