"""Keyed state cost on each backend, and the embedded stores the disk backend was chosen from.

    python -m bench.state 1000000 [--backend heap|disk] [--cache-size N]
    python -m bench.state 1000000 --stores          # raw LMDB vs RocksDB vs SQLite

The backend run fills N keys through the ``table(descriptor)`` fast path (what keyed reduce
uses), updates them in random order (read-modify-write), reads them in random order, then
measures what a checkpoint costs: the synchronous part (snapshot + serialize), writing it, and
restoring it into a fresh backend of the same kind.

``--stores`` measures the candidate stores without strom around them: insert N keys in
batches of 10,000 (as a cache write-back does), update them in random order (sorted batches of
10,000), point-read them in random order, scan them all (a snapshot), bulk-load them into a
fresh store (a restore).
RocksDB (``rocksdict``) is measured only if installed; it is not a dependency.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from strom.runtime.keygroups import key_group_range
from strom.runtime.state import HeapKeyedStateBackend, create_keyed_backend
from strom.state import ValueStateDescriptor

DESCRIPTOR = ValueStateDescriptor[tuple[int, int]]("stats")


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(entries: int, backend: str = "heap", cache_size: int | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        return _measure(entries, backend, cache_size, Path(d))


def _measure(entries: int, kind: str, cache_size: int | None, d: Path) -> dict[str, float]:
    def make() -> HeapKeyedStateBackend:
        opts: dict[str, Any] = {"directory": d} if kind == "disk" else {}
        if cache_size is not None:
            opts["cache_size"] = cache_size
        return create_keyed_backend(kind, 128, key_group_range(0, 128, 1), **opts)

    keys = [f"user-{i}" for i in range(entries)]
    shuffled = random.Random(1).sample(keys, len(keys))
    backend = make()
    table = backend.table(DESCRIPTOR)
    out: dict[str, float] = {}

    def fill() -> None:
        for i, k in enumerate(keys):
            table[k] = (i, i * 2)

    def update() -> None:
        get = table.get
        for k in shuffled:
            a, b = get(k)
            table[k] = (a + 1, b)

    def read() -> None:
        get = table.get
        for k in shuffled:
            get(k)

    out["fill_s"] = _timed(fill)
    out["update_random_s"] = _timed(update)
    out["read_random_s"] = _timed(read)
    t0 = time.perf_counter()
    data = pickle.dumps({"op": {"keyed": backend.snapshot()}}, protocol=5)
    t1 = time.perf_counter()
    path = d / "checkpoint"
    path.write_bytes(data)
    t2 = time.perf_counter()
    restored = pickle.loads(path.read_bytes())
    fresh = make()
    fresh.restore([restored["op"]["keyed"]], key_group_range(0, 128, 1))
    t3 = time.perf_counter()
    assert fresh.table(DESCRIPTOR)[keys[-1]] == (entries, (entries - 1) * 2)
    out.update(
        snapshot_and_serialize_s=t1 - t0,
        write_s=t2 - t1,
        read_and_restore_s=t3 - t2,
        checkpoint_mib=len(data) / 2**20,
    )
    if kind == "disk":
        out["store_mib"] = backend.disk_usage() / 2**20  # type: ignore[attr-defined]
    backend.close()
    fresh.close()
    return out


# -- raw store candidates -----------------------------------------------------------------------
class _Lmdb:
    def __init__(self, path: str) -> None:
        import lmdb

        self.env = lmdb.open(path, map_size=1 << 34, sync=False, metasync=False, lock=False)
        self.reader = self.env.begin()

    def put_batch(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(items)
        self.reader.abort()
        self.reader = self.env.begin()

    def get(self, key: bytes) -> Any:
        return self.reader.get(key)

    def scan(self) -> Iterable[Any]:
        return self.reader.cursor().iternext()

    def close(self) -> None:
        self.reader.abort()
        self.env.close()


class _Rocks:
    def __init__(self, path: str) -> None:
        from rocksdict import Options, Rdict, WriteBatch, WriteOptions

        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db = Rdict(path, opts)
        write = WriteOptions()
        write.disable_wal = True  # like LMDB above: no durability, the store is scratch
        self.db.set_write_options(write)
        self.batch = WriteBatch

    def put_batch(self, items: list[tuple[bytes, bytes]]) -> None:
        wb = self.batch(raw_mode=True)
        for k, v in items:
            wb.put(k, v)
        self.db.write(wb)

    def get(self, key: bytes) -> Any:
        return self.db.get(key)

    def scan(self) -> Iterable[Any]:
        return self.db.items()

    def close(self) -> None:
        self.db.close()


class _Sqlite:
    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(path, "state.db"), isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def put_batch(self, items: list[tuple[bytes, bytes]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)
        self.db.execute("COMMIT")

    def get(self, key: bytes) -> Any:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def scan(self) -> Iterable[Any]:
        return self.db.execute("SELECT k, v FROM kv")

    def close(self) -> None:
        self.db.close()


def _du(path: str) -> int:
    return sum(
        os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(path) for f in files
    )


def measure_store(name: str, entries: int, batch: int = 10_000) -> dict[str, float]:
    cls: Any = {"lmdb": _Lmdb, "rocksdict": _Rocks, "sqlite": _Sqlite}[name]
    keys = [b"s" + f"user-{i}".encode() for i in range(entries)]
    values = [pickle.dumps((i, i * 2), protocol=5) for i in range(entries)]
    order = random.Random(1).sample(range(entries), entries)
    out: dict[str, float] = {}
    root = tempfile.mkdtemp()
    try:
        store = cls(os.path.join(root, "a"))

        def insert() -> None:
            for i in range(0, entries, batch):
                store.put_batch(list(zip(keys[i : i + batch], values[i : i + batch], strict=True)))

        def update() -> None:
            for i in range(0, entries, batch):
                # sorted, as the disk backend writes its cache back
                store.put_batch(sorted((keys[j], values[j][::-1]) for j in order[i : i + batch]))

        def get() -> None:
            for j in order:
                store.get(keys[j])

        def scan() -> None:
            assert sum(1 for _ in store.scan()) == entries

        for step, fn in (("insert", insert), ("update", update), ("get", get), ("scan", scan)):
            out[f"{step}_s"] = _timed(fn)
        out["size_mib"] = _du(os.path.join(root, "a")) / 2**20
        store.close()
        fresh = cls(os.path.join(root, "b"))
        items = sorted(zip(keys, values, strict=True))
        out["bulk_load_s"] = _timed(
            lambda: [fresh.put_batch(items[i : i + 100_000]) for i in range(0, entries, 100_000)]
        )
        fresh.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.state")
    ap.add_argument("entries", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--backend", choices=["heap", "disk"], default="heap")
    ap.add_argument("--cache-size", type=int, default=None)
    ap.add_argument("--stores", action="store_true", help="compare the raw embedded stores")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if not args.stores:
        for k, v in measure(args.entries, args.backend, args.cache_size).items():
            print(f"{k}: {v:.3f}")
        return
    for name in ("lmdb", "rocksdict", "sqlite"):
        try:
            result = measure_store(name, args.entries)
        except ImportError:
            print(f"{name}: not installed")
            continue
        print(name, " ".join(f"{k}={v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
