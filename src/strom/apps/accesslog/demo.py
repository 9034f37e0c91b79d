"""The demo job behind ``strom demo``: per-API request statistics over generated access logs.

Pipeline: ``AccessLogSource`` (parallel) → map to a stats tuple → ``key_by(api)`` → rolling
``reduce`` (count, successes, total and max latency) → collected here. A rolling reduce emits
the updated aggregate for every record; the one with the highest count per API is final.

Counts and latencies are integers, so the sums are exact whatever order the subtasks merge in:
the table is identical at every parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass

from strom.api import CloseableIterator, DataStream, StreamExecutionEnvironment
from strom.apps.accesslog.generator import AccessLogRecord, AccessLogSource

DEFAULT_RECORDS = 100_000
DEFAULT_SEED = 42
DEFAULT_PARALLELISM = 2

_Acc = tuple[str, int, int, int, int]
"""(api, requests, successes, total latency ms, max latency ms)"""


@dataclass(frozen=True)
class ApiStats:
    """Statistics of one API; a request succeeded when its status is below 400."""

    api: str
    requests: int
    successes: int
    total_latency_ms: int
    max_latency_ms: int

    @property
    def success_rate(self) -> float:
        """Successful requests in percent."""
        return 100.0 * self.successes / self.requests if self.requests else 0.0

    @property
    def avg_latency_ms(self) -> float:
        return self.total_latency_ms / self.requests if self.requests else 0.0


def _to_acc(r: AccessLogRecord) -> _Acc:
    latency = r["latency_ms"]
    return (r["api"], 1, 1 if r["status"] < 400 else 0, latency, latency)


def _merge(a: _Acc, b: _Acc) -> _Acc:
    return (a[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], max(a[4], b[4]))


def _api(acc: _Acc) -> str:
    return acc[0]


def build_job(env: StreamExecutionEnvironment, records: int, seed: int) -> DataStream:
    """Add the demo's operators to ``env``; the returned stream carries rolling stats tuples."""
    return (
        env.add_source(AccessLogSource(records, seed), "Access Log Source")
        .map(_to_acc)
        .name("To Stats")
        .key_by(_api)
        .reduce(_merge)
        .name("Per-API Stats")
    )


def run_demo(
    records: int = DEFAULT_RECORDS,
    parallelism: int | None = DEFAULT_PARALLELISM,
    seed: int = DEFAULT_SEED,
) -> list[ApiStats]:
    """Run the job and return one ``ApiStats`` per API, most requested first.

    ``parallelism=None`` keeps the environment's default (``strom run --parallelism``).
    """
    env = StreamExecutionEnvironment.get_execution_environment()
    if parallelism is not None:
        env.set_parallelism(parallelism)
    results = build_job(env, records, seed).execute_and_collect("access-log demo")
    assert isinstance(results, CloseableIterator)  # no limit given: an iterator, not a list
    final: dict[str, _Acc] = {}
    with results:
        for acc in results:
            seen = final.get(acc[0])
            if seen is None or acc[1] > seen[1]:
                final[acc[0]] = acc
    stats = [ApiStats(*acc) for acc in final.values()]
    return sorted(stats, key=lambda s: (-s.requests, s.api))


_HEADER = ("API", "requests", "success rate %", "avg latency ms", "max latency ms")


def _row(s: ApiStats) -> tuple[str, ...]:
    return (
        s.api,
        f"{s.requests:,}",
        f"{s.success_rate:.2f}",
        f"{s.avg_latency_ms:.1f}",
        f"{s.max_latency_ms:,}",
    )


def format_table(stats: list[ApiStats]) -> str:
    """A plain-text table of ``stats`` in the given order, with a total row."""
    total = ApiStats(
        "all APIs",
        sum(s.requests for s in stats),
        sum(s.successes for s in stats),
        sum(s.total_latency_ms for s in stats),
        max((s.max_latency_ms for s in stats), default=0),
    )
    rows = [_HEADER, *(_row(s) for s in stats), _row(total)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]

    def line(r: tuple[str, ...]) -> str:
        cells = [
            r[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)),
        ]
        return " | ".join(cells).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])])
