"""Access-log analytics (seed §4): generated web-server access logs, per-API statistics.

``generator`` produces deterministic records (a plain function and a parallel source);
``demo`` is the job behind ``strom demo``: requests, success rate and latency per API.
"""

from strom.apps.accesslog.demo import ApiStats, build_job, format_table, run_demo
from strom.apps.accesslog.generator import (
    APIS,
    AccessLogRecord,
    AccessLogSource,
    as_json_lines,
    generate,
    record_at,
)

__all__ = [
    "APIS",
    "AccessLogRecord",
    "AccessLogSource",
    "ApiStats",
    "as_json_lines",
    "build_job",
    "format_table",
    "generate",
    "record_at",
    "run_demo",
]
