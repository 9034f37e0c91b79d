"""Which bucket (sub-directory of the base path) a record of the rolling ``FileSink`` goes to.

A bucket assigner is a ``BucketAssigner`` or any callable ``(element, context) -> str``; the
returned bucket id is a relative path below the base path ("" for the base path itself).
Bucket ids are checked once each: absolute paths and ``..`` are refused, so a record can never
make the sink write outside its base path.

With exactly-once, a restore replays the records after the last checkpoint into new part
files; an assigner that looks at processing time may put them into other buckets than the
failed attempt did, which is harmless (that attempt's files are never finished).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BasePathBucketAssigner",
    "BucketAssigner",
    "BucketContext",
    "DateTimeBucketAssigner",
    "check_bucket_id",
]


class BucketContext:
    """What an assigner knows about the record at hand."""

    __slots__ = ("_clock", "timestamp")

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self.timestamp: int | None = None
        """The record's event-time timestamp (ms), if it has one."""

    def current_processing_time(self) -> int:
        """Processing time in ms (the job's clock, a ``ManualClock`` in tests)."""
        return self._clock()


@runtime_checkable
class BucketAssigner(Protocol):
    def get_bucket_id(self, element: Any, context: BucketContext) -> str:
        """The bucket of ``element``: a relative path below the base path."""
        ...


class BasePathBucketAssigner:
    """Every record into the base path itself (no sub-directory)."""

    def get_bucket_id(self, element: Any, context: BucketContext) -> str:
        return ""

    def __repr__(self) -> str:
        return "BasePathBucketAssigner()"


class DateTimeBucketAssigner:
    """Buckets by time, formatted with ``strftime(format)`` in ``timezone`` (UTC by default):
    one directory per hour with the default ``"%Y-%m-%d--%H"``, as in Flink.

    The time is the record's timestamp when it has one and ``use_record_timestamp`` is true
    (then a replay after a restore lands in the same buckets), else processing time.
    """

    def __init__(
        self,
        format: str = "%Y-%m-%d--%H",
        timezone: tzinfo = UTC,
        *,
        use_record_timestamp: bool = True,
    ) -> None:
        if not isinstance(format, str) or not format:
            raise ValueError(f"DateTimeBucketAssigner: format must be a non-empty str: {format!r}")
        datetime(2000, 1, 1, tzinfo=timezone).strftime(format)  # a bad format fails here
        self.format = format
        self.timezone = timezone
        self.use_record_timestamp = use_record_timestamp
        # (second, bucket id) of the last call: records arrive in bursts of the same second.
        # One tuple, replaced whole, so subtask threads sharing this assigner never see a
        # torn pair.
        self._last: tuple[int, str] = (-(2**63), "")

    def get_bucket_id(self, element: Any, context: BucketContext) -> str:
        ts = context.timestamp
        if ts is None or not self.use_record_timestamp:
            ts = context.current_processing_time()
        second = ts // 1000
        last = self._last
        if last[0] == second:
            return last[1]
        bucket = datetime.fromtimestamp(second, self.timezone).strftime(self.format)
        self._last = (second, bucket)
        return bucket

    def __repr__(self) -> str:
        return f"DateTimeBucketAssigner(format={self.format!r}, timezone={self.timezone!r})"


def check_bucket_id(bucket_id: object, element: Any) -> str:
    """``bucket_id`` normalised to ``a/b`` form; raises ``ValueError`` naming the record when it
    is not a relative path below the base path."""
    if not isinstance(bucket_id, str):
        raise ValueError(
            f"bucket assigner returned {type(bucket_id).__name__}, not str, for {element!r:.200}"
        )
    parts = [p for p in bucket_id.replace("\\", "/").split("/") if p not in ("", ".")]
    if bucket_id.startswith(("/", "\\")) or ".." in parts or "\0" in bucket_id:
        raise ValueError(
            f"bucket id {bucket_id!r} for {element!r:.200} must be a relative path "
            "without '..' (it would leave the base path)"
        )
    return "/".join(parts)
