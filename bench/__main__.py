"""Benchmark runner: each variant in a fresh subprocess (so peak RSS is its own), best of N.

    python -m bench pipeline [--records 1000000] [--repeat 3]
    python -m bench kafka | kafka-eo [--records N] [--repeat N]   (bench/kafka.py; brokers)

Prints a table and writes ``bench/results/<suite>.json``; copy the table into BENCHMARKS.md
with the machine description it prints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

SUITES = {
    "pipeline": ["plain", "strom-p1", "strom-p2"],
    "checkpointing": ["strom-p1", "strom-p1-ckpt1000", "strom-p1-ckpt100", "strom-p2-ckpt1000"],
    "windows": ["plain-tumbling", "plain-functions", "strom-tumbling", "strom-sliding"],
    "state-backends": ["plain", "strom-p1", "strom-p1-disk", "strom-p1-disk-ckpt100"],
    # Kafka suites start their own broker and run their variants in one process against it
    # (bench/kafka.py); listed here so the suite names are known.
    "kafka": ["w1-loop", "w1-strom", "w2-loop", "w2-strom"],
    "kafka-eo": ["w1-strom-alo", "w1-strom-eo", "w2-strom-alo", "w2-strom-eo"],
}
COMPARED = {"windows": ["plain-tumbling", "plain-functions", "strom-tumbling"]}
"""Variants whose results must agree (default: all of the suite's variants)."""


def child(suite: str, variant: str, records: int, repeat: int) -> None:
    if suite == "windows":
        from bench import windows

        data: Any = windows.records(records)
        runner = windows.run
    else:
        from bench import pipeline
        from bench.data import access_log_lines

        data = access_log_lines(records)
        runner = pipeline.run
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = float("inf")
    checksum = None
    for _ in range(repeat):
        seconds, result = runner(variant, data)
        best = min(best, seconds)
        checksum = sorted(result.items()) if isinstance(result, dict) else result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "variant": variant,
                "seconds": best,
                "records_per_s": records / best,
                "peak_rss_mib": peak / 1024,
                "rss_over_input_mib": (peak - base_rss) / 1024,
                "checksum": hashlib.sha256(str(checksum).encode()).hexdigest()[:16],
            }
        )
    )


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.suite, args.child, args.records, args.repeat)
        return
    if args.suite.startswith("kafka"):
        from bench import kafka

        rows = kafka.main(args.suite, args.records, args.repeat)
        print(f"machine: {machine()}")
        print(kafka.report(args.suite, args.records, args.repeat, rows))
        results = Path(__file__).parent / "results"
        results.mkdir(exist_ok=True)
        (results / f"{args.suite}.json").write_text(
            json.dumps({"machine": machine(), "rows": rows})
        )
        return
    rows = []
    for variant in SUITES[args.suite]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                args.suite,
                "--child",
                variant,
                "--records",
                str(args.records),
                "--repeat",
                str(args.repeat),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    compared = COMPARED.get(args.suite, SUITES[args.suite])
    sums = {r["checksum"] for r in rows if r["variant"] in compared}
    if len(sums) != 1:
        raise SystemExit(f"variants disagree on the result: {rows}")
    plain = next((r for r in rows if r["variant"] == "plain"), rows[0])
    print(f"machine: {machine()}")
    print(f"suite: {args.suite}, {args.records:,} records, best of {args.repeat}")
    print(f"| variant | records/s | vs {plain['variant']} | peak RSS MiB | RSS over input MiB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['records_per_s']:,.0f} | "
            f"{r['records_per_s'] / plain['records_per_s']:.2f}x | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_over_input_mib']:.0f} |"
        )
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.suite}.json").write_text(json.dumps({"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
