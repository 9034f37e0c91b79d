"""Deterministic, generated web-server access-log records for the log-analytics app (seed §4).

Record ``i`` of seed ``s`` is a pure function of ``(i, s)`` (``record_at``), so any split of
the indices between subtasks yields the same records: results computed from them do not depend
on parallelism, and tests can recompute them in plain Python (``generate``). Popularity across
the ~8 APIs is skewed, and each API has its own error rates and latency profile.

``AccessLogSource`` is the same data as a parallel push-style source (seed §3.2): subtask ``k``
of ``p`` emits indices ``k, k + p, k + 2p, ...``; its position lives in operator list state and
is advanced under the checkpoint lock together with the emit.
"""

from __future__ import annotations

from typing import TypedDict

import orjson

from strom.functions import (
    CheckpointedFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    RichParallelSourceFunction,
    SourceContext,
)
from strom.functions.context import RuntimeContext
from strom.state import ListState, ListStateDescriptor

BASE_TS_MS = 1_700_000_000_000
"""Timestamp of record 0 (2023-11-14T22:13:20Z)."""

INTERVAL_MS = 10
"""Record ``i`` falls in ``[BASE_TS_MS + i * INTERVAL_MS, ... + INTERVAL_MS)``: 100 requests/s."""

# (path, share of requests in per mille, base latency ms, 4xx per mille, 5xx per mille)
_PROFILES: tuple[tuple[str, int, int, int, int], ...] = (
    ("/api/products", 300, 35, 15, 3),
    ("/api/search", 200, 80, 10, 5),
    ("/api/orders", 150, 60, 20, 8),
    ("/api/cart", 120, 25, 12, 2),
    ("/api/users", 90, 30, 25, 2),
    ("/api/login", 70, 120, 80, 4),  # mistyped passwords: many 401s
    ("/api/payments", 40, 250, 15, 25),  # a flaky payment provider behind it
    ("/api/recommendations", 30, 150, 5, 15),
)
APIS: tuple[str, ...] = tuple(p[0] for p in _PROFILES)
"""The generated APIs, most requested first."""

_BY_MILLE: tuple[int, ...] = tuple(i for i, p in enumerate(_PROFILES) for _ in range(p[1]))
assert len(_BY_MILLE) == 1000, "API shares must add up to 1000 per mille"

_CLIENT_ERRORS = (400, 401, 401, 403, 404, 404, 429, 422)
_SERVER_ERRORS = (500, 502, 503, 504)

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (much faster than seeding a
    ``random.Random`` per record, which per-index determinism would otherwise need)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


_CLIENTS: tuple[str, ...] = tuple(
    f"10.{(h >> 16) & 255}.{(h >> 8) & 255}.{h & 255}" for h in (_mix(c) for c in range(1000))
)


class AccessLogRecord(TypedDict):
    """One request as a web server logs it."""

    ts: int
    """Milliseconds since the epoch."""
    api: str
    status: int
    """HTTP status code; success means ``status < 400``."""
    latency_ms: int
    client: str
    """The caller's IP address."""


def _seed_key(seed: int) -> int:
    return _mix(seed & _MASK)


def _record(index: int, key: int) -> AccessLogRecord:
    h = _mix((key + index) & _MASK)
    path, _, base, client_errors, server_errors = _PROFILES[_BY_MILLE[h % 1000]]
    roll = (h >> 10) % 1000
    if roll < server_errors:
        status = _SERVER_ERRORS[(h >> 56) & 3]
    elif roll < server_errors + client_errors:
        status = _CLIENT_ERRORS[(h >> 56) & 7]
    else:
        kind = (h >> 58) & 63
        status = 304 if kind == 0 else 201 if kind == 1 else 204 if kind == 2 else 200
    latency = base // 2 + ((base * ((h >> 20) & 0x3FF)) >> 10)  # base/2 .. 3*base/2
    if status == 504 or (h >> 30) % 100 < 2:  # timeouts, and a slow tail (GC, cold caches)
        latency *= 5 + (h >> 37) % 6
    return {
        "ts": BASE_TS_MS + index * INTERVAL_MS + (h >> 60) % INTERVAL_MS,
        "api": path,
        "status": status,
        "latency_ms": latency,
        "client": _CLIENTS[(h >> 43) % 1000],
    }


def record_at(index: int, seed: int = 0) -> AccessLogRecord:
    """Record number ``index`` (>= 0) of the log generated with ``seed``."""
    if index < 0:
        raise ValueError(f"record index must be >= 0, got {index}")
    return _record(index, _seed_key(seed))


def generate(n: int, seed: int = 0) -> list[AccessLogRecord]:
    """The first ``n`` records of the log generated with ``seed``, in index order."""
    if n < 0:
        raise ValueError(f"number of records must be >= 0, got {n}")
    key = _seed_key(seed)
    return [_record(i, key) for i in range(n)]


def as_json_lines(n: int, seed: int = 0, *, newline: bool = True) -> list[bytes]:
    """``generate(n, seed)`` as JSON documents (one per record), ``\\n``-terminated unless
    ``newline`` is false (e.g. for message queues, where the message is the frame)."""
    end = b"\n" if newline else b""
    dumps = orjson.dumps
    return [dumps(r) + end for r in generate(n, seed)]


Position = tuple[int, int | None, int]
"""``(next index, end index or None for endless, step)``: indices still to emit."""

_TURN = 256  # records emitted from one position before turning to the next one


class AccessLogSource(RichParallelSourceFunction[AccessLogRecord], CheckpointedFunction):
    """Parallel source of ``records`` generated access-log records (``None``: endless).

    Each subtask starts with one position ``(k, records, p)``. Positions are the operator list
    state, so on restore they are dealt to the new subtasks whatever the new parallelism, and
    each index is still emitted exactly once; a subtask given several positions serves them in
    turn. Emit and advance happen together under the checkpoint lock, so a snapshot never sees
    a record emitted but the position not yet moved past it.
    """

    STATE = ListStateDescriptor[Position]("accesslog-positions")

    def __init__(self, records: int | None = 100_000, seed: int = 0) -> None:
        if records is not None and records < 0:
            raise ValueError(f"number of records must be >= 0 or None, got {records}")
        self.records = records
        self.seed = seed
        self._running = True
        self._positions: list[Position] | None = None
        self._state: ListState[Position] | None = None

    def initialize_state(self, ctx: FunctionInitializationContext) -> None:
        self._state = ctx.get_operator_state_store().get_list_state(self.STATE)
        if ctx.is_restored():
            self._positions = [
                (int(a), None if b is None else int(b), int(c)) for a, b, c in self._state.get()
            ]

    def open(self, runtime_context: RuntimeContext) -> None:
        if self._positions is None:  # a fresh start: this subtask's share of the indices
            k = runtime_context.get_index_of_this_subtask()
            p = runtime_context.get_number_of_parallel_subtasks()
            self._positions = [(k, self.records, p)]

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None:
        # The runtime calls this under the checkpoint lock: no emit is half done.
        if self._state is not None and self._positions is not None:
            self._state.update(self._positions)

    def run(self, ctx: SourceContext[AccessLogRecord]) -> None:
        positions = self._positions
        if positions is None:
            raise RuntimeError("AccessLogSource.run() before open()")
        lock = ctx.get_checkpoint_lock()
        key = _seed_key(self.seed)
        slot = 0
        while self._running and positions:
            slot %= len(positions)
            index, end, step = positions[slot]
            for _ in range(_TURN):
                if end is not None and index >= end:
                    break
                with lock:
                    ctx.collect(_record(index, key))
                    index += step
                    positions[slot] = (index, end, step)
            if end is not None and index >= end:
                with lock:
                    del positions[slot]
            else:
                slot += 1

    def cancel(self) -> None:
        self._running = False
