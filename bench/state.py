"""Keyed state snapshot and restore cost: 1M entries on the heap backend.

Measures what a checkpoint of a large keyed state costs: the synchronous part (grouping by key
group and serializing), writing it, and restoring it into a fresh backend.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

from strom.runtime.keygroups import key_group_range
from strom.runtime.state import HeapKeyedStateBackend
from strom.state import ValueStateDescriptor


def measure(entries: int) -> dict[str, float]:
    backend = HeapKeyedStateBackend(128)
    table = backend.table(ValueStateDescriptor[tuple[int, int]]("stats"))
    for i in range(entries):
        table[f"user-{i}"] = (i, i * 2)
    t0 = time.perf_counter()
    snapshot = backend.snapshot()
    data = pickle.dumps({"op": {"keyed": snapshot}}, protocol=5)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state"
        path.write_bytes(data)
        t2 = time.perf_counter()
        restored = pickle.loads(path.read_bytes())
    fresh = HeapKeyedStateBackend(128)
    fresh.restore([restored["op"]["keyed"]], key_group_range(0, 128, 1))
    t3 = time.perf_counter()
    assert len(fresh.tables["stats"]) == entries
    return {
        "snapshot_and_serialize_s": t1 - t0,
        "write_s": t2 - t1,
        "read_and_restore_s": t3 - t2,
        "size_mib": len(data) / 2**20,
    }


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for k, v in measure(n).items():
        print(f"{k}: {v:.3f}")
