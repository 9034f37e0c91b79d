"""Deterministic access-log records for benchmarks (JSON lines, as a Kafka topic would hold)."""

from __future__ import annotations

import json
import random

APIS = [f"/api/v1/resource{i}" for i in range(50)]


def access_log_lines(n: int, seed: int = 42) -> list[bytes]:
    rnd = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(APIS))]  # skewed popularity, like real APIs
    apis = rnd.choices(APIS, weights=weights, k=n)
    out = []
    for i, api in enumerate(apis):
        roll = rnd.random()
        status = 200 if roll < 0.9 else 404 if roll < 0.95 else 500
        # stdlib json, not orjson, writes the input: orjson 3.13's result objects each pin about
        # 4 KiB, which would make the input alone 4 GB at 1M records (see BENCHMARKS.md)
        out.append(
            (
                json.dumps(
                    {
                        "ts": 1_700_000_000_000 + i * 10,
                        "api": api,
                        "status": status,
                        "latency_ms": rnd.randrange(1, 800),
                        "client": f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}",
                    },
                    separators=(",", ":"),
                )
            ).encode()
        )
    return out
