"""The access-log demo: its table equals a plain-Python computation over ``generate``, at any
parallelism; the generator is deterministic; the source restores its positions exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson
import pytest

from strom import StreamExecutionEnvironment
from strom.api import CloseableIterator
from strom.apps.accesslog import (
    APIS,
    AccessLogRecord,
    AccessLogSource,
    ApiStats,
    as_json_lines,
    format_table,
    generate,
    record_at,
    run_demo,
)
from strom.apps.accesslog.generator import BASE_TS_MS, INTERVAL_MS
from strom.functions import (
    FunctionInitializationContext,
    FunctionSnapshotContext,
    SourceCancelled,
    SourceContext,
)
from strom.runtime.state import OperatorStateBackend

N = 20_000
SEED = 7


def expected_stats(records: list[AccessLogRecord]) -> dict[str, tuple[int, int, int, int]]:
    """api -> (requests, successes, total latency, max latency), the obvious way."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for r in records:
        n, ok, total, top = out.get(r["api"], (0, 0, 0, 0))
        lat = r["latency_ms"]
        out[r["api"]] = (n + 1, ok + (r["status"] < 400), total + lat, max(top, lat))
    return out


@pytest.mark.parametrize("parallelism", [1, 4])
def test_demo_stats_equal_plain_python_at_any_parallelism(parallelism: int) -> None:
    expected = expected_stats(generate(N, SEED))
    stats = run_demo(records=N, parallelism=parallelism, seed=SEED)
    got = {s.api: (s.requests, s.successes, s.total_latency_ms, s.max_latency_ms) for s in stats}
    assert got == expected
    assert [s.requests for s in stats] == sorted((s.requests for s in stats), reverse=True)


def test_table_shows_exact_numbers_most_requested_first() -> None:
    expected = expected_stats(generate(N, SEED))
    lines = format_table(run_demo(records=N, parallelism=2, seed=SEED)).splitlines()
    assert [c.strip() for c in lines[0].split("|")] == [
        "API",
        "requests",
        "success rate %",
        "avg latency ms",
        "max latency ms",
    ]
    rows = [[c.strip() for c in line.split("|")] for line in lines[2:-2]]
    assert [r[0] for r in rows] == sorted(expected, key=lambda api: -expected[api][0])
    for api, requests, rate, avg, top in rows:
        n, ok, total, max_latency = expected[api]
        assert int(requests.replace(",", "")) == n
        assert float(rate) == pytest.approx(100 * ok / n, abs=0.005)
        assert float(avg) == pytest.approx(total / n, abs=0.05)
        assert int(top.replace(",", "")) == max_latency
    total_row = [c.strip() for c in lines[-1].split("|")]
    assert total_row[:2] == ["all APIs", f"{N:,}"]


def test_table_of_nothing() -> None:
    assert run_demo(records=0, parallelism=2) == []
    assert format_table([]).splitlines()[-1].split("|")[1].strip() == "0"


def test_api_stats_rates() -> None:
    s = ApiStats("/api/x", requests=4, successes=3, total_latency_ms=10, max_latency_ms=7)
    assert (s.success_rate, s.avg_latency_ms) == (75.0, 2.5)


# -- generator -------------------------------------------------------------------------------


def test_generate_is_deterministic_per_index_and_seed() -> None:
    records = generate(500, SEED)
    assert records == generate(500, SEED)
    assert records != generate(500, SEED + 1)
    assert [record_at(i, SEED) for i in (0, 17, 499)] == [records[0], records[17], records[499]]
    assert generate(1000, SEED)[:500] == records


def test_generated_records_look_like_access_logs() -> None:
    records = generate(N, SEED)
    assert set(records[0]) == {"ts", "api", "status", "latency_ms", "client"}
    ts = [r["ts"] for r in records]
    assert ts == sorted(set(ts))  # strictly increasing
    assert [(t - BASE_TS_MS) // INTERVAL_MS for t in ts] == list(range(N))
    by_api = Counter(r["api"] for r in records)
    assert set(by_api) == set(APIS)
    assert [api for api, _ in by_api.most_common()] == list(APIS)  # skewed popularity
    statuses = Counter(r["status"] for r in records)
    assert statuses[200] / N > 0.8
    assert any(400 <= s < 500 for s in statuses)
    assert any(s >= 500 for s in statuses)
    assert all(r["latency_ms"] > 0 for r in records)
    assert 100 < len({r["client"] for r in records}) <= 1000


def test_json_lines_round_trip() -> None:
    lines = as_json_lines(50, SEED)
    assert all(line.endswith(b"\n") for line in lines)
    assert [orjson.loads(line) for line in lines] == generate(50, SEED)
    assert as_json_lines(3, SEED, newline=False)[0] == orjson.dumps(record_at(0, SEED))


# -- source ----------------------------------------------------------------------------------


def index_of(record: AccessLogRecord) -> int:
    return (record["ts"] - BASE_TS_MS) // INTERVAL_MS


@pytest.mark.parametrize("parallelism", [1, 3])
def test_source_emits_every_record_once(parallelism: int) -> None:
    env = StreamExecutionEnvironment.get_execution_environment().set_parallelism(parallelism)
    results = env.add_source(AccessLogSource(2000, SEED)).execute_and_collect()
    assert isinstance(results, CloseableIterator)
    with results:
        got = sorted(results, key=index_of)
    assert got == generate(2000, SEED)


class FakeRuntimeContext:
    def __init__(self, index: int, parallelism: int) -> None:
        self.index, self.parallelism = index, parallelism

    def get_index_of_this_subtask(self) -> int:
        return self.index

    def get_number_of_parallel_subtasks(self) -> int:
        return self.parallelism


class FakeInitContext(FunctionInitializationContext):
    def __init__(self, store: OperatorStateBackend, restored: bool) -> None:
        self.store, self.restored = store, restored

    def is_restored(self) -> bool:
        return self.restored

    def get_operator_state_store(self) -> OperatorStateBackend:
        return self.store

    def get_keyed_state_store(self) -> None:
        return None


class FakeSnapshotContext(FunctionSnapshotContext):
    def get_checkpoint_id(self) -> int:
        return 1

    def get_checkpoint_timestamp(self) -> int:
        return 0


class FakeSourceContext(SourceContext[AccessLogRecord]):
    """Collects records; after ``fail_after`` of them ``collect`` raises as on cancellation."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.records: list[AccessLogRecord] = []
        self.fail_after = fail_after
        self.lock = threading.RLock()

    def collect(self, element: AccessLogRecord) -> None:
        if self.fail_after is not None and len(self.records) >= self.fail_after:
            raise SourceCancelled()
        self.records.append(element)

    def collect_with_timestamp(self, element: AccessLogRecord, timestamp: int) -> None:
        self.collect(element)

    def emit_watermark(self, watermark: int) -> None:
        pass

    def mark_as_temporarily_idle(self) -> None:
        pass

    def get_checkpoint_lock(self) -> Any:
        return self.lock

    def is_cancelled(self) -> bool:
        return False


def start_subtask(
    index: int, parallelism: int, store: OperatorStateBackend, restored: bool, n: int | None
) -> AccessLogSource:
    source = AccessLogSource(n, SEED)
    source.initialize_state(FakeInitContext(store, restored))
    source.open(FakeRuntimeContext(index, parallelism))  # type: ignore[arg-type]
    return source


@pytest.mark.parametrize(("old", "new"), [(2, 2), (3, 1), (1, 4), (4, 3)])
def test_source_positions_restore_exactly_once_at_another_parallelism(old: int, new: int) -> None:
    n = 3000
    emitted: list[AccessLogRecord] = []
    snapshots = []
    for k in range(old):
        store = OperatorStateBackend()
        source = start_subtask(k, old, store, restored=False, n=n)
        ctx = FakeSourceContext(fail_after=100 + 97 * k)  # "fails" part-way through
        with pytest.raises(SourceCancelled):
            source.run(ctx)
        source.snapshot_state(FakeSnapshotContext())
        emitted.extend(ctx.records)
        snapshots.append(store.snapshot())
    for k in range(new):
        store = OperatorStateBackend()
        store.restore(snapshots, k, new)
        source = start_subtask(k, new, store, restored=True, n=n)
        ctx = FakeSourceContext()
        source.run(ctx)
        emitted.extend(ctx.records)
    assert sorted(emitted, key=index_of) == generate(n, SEED)


def test_endless_source_stops_on_cancel() -> None:
    source = start_subtask(0, 1, OperatorStateBackend(), restored=False, n=None)
    ctx = FakeSourceContext()
    runner = threading.Thread(target=source.run, args=(ctx,), daemon=True)
    runner.start()
    runner.join(0.05)
    assert runner.is_alive()
    source.cancel()
    runner.join(5)
    assert not runner.is_alive()
    assert len(ctx.records) > 0
    assert [index_of(r) for r in ctx.records] == list(range(len(ctx.records)))
