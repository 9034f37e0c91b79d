"""Where a partition starts and, in bounded mode, where it stops.

Start positions (seed §3.10, Flink's ``OffsetsInitializer``/``StartupMode``) are resolved to
concrete offsets when a partition is first assigned, never left as "latest" or "committed"
sentinels: the first checkpoint then records where reading really began, so a restore long
after the start resumes there rather than at a "latest" that has moved on. Only "earliest" is
kept as the :data:`~strom.connectors.kafka.source.split.EARLIEST` sentinel, which stays right.

* ``EARLIEST`` — the log start; ``LATEST`` — the end of the partition at assignment: the last
  stable offset under ``read_committed`` (the default), the high watermark under
  ``read_uncommitted`` (``lookup`` explains how it is found, and why not by ListOffsets).
* ``GROUP_OFFSETS`` (default) — the group's committed offset; partitions without one follow
  ``auto.offset.reset`` (Kafka's default: latest, i.e. the end as for ``LATEST``).
* ``SPECIFIC_OFFSETS`` — the given offset per ``(topic, partition)``; partitions not given
  fall back to ``GROUP_OFFSETS``.
* ``TIMESTAMP`` — the first record with a timestamp >= the given one; the end of the
  partition when there is none.

Stopping offsets are exclusive: a bounded partition yields records with offsets below it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strom.connectors.kafka.errors import KafkaSourceError
from strom.connectors.kafka.source.lookup import OffsetLookup
from strom.connectors.kafka.source.split import EARLIEST, split_id
from strom.errors import InvalidJobError

__all__ = [
    "StartupMode",
    "StoppingOffsets",
    "resolve_start_offsets",
    "resolve_stopping_offsets",
]

TP = tuple[str, int]


class StartupMode(enum.Enum):
    """Where a job without restored state starts reading (Flink's ``scan.startup.mode``)."""

    EARLIEST = "earliest-offset"
    LATEST = "latest-offset"
    GROUP_OFFSETS = "group-offsets"
    SPECIFIC_OFFSETS = "specific-offsets"
    TIMESTAMP = "timestamp"

    @classmethod
    def parse(cls, value: StartupMode | str) -> StartupMode:
        if isinstance(value, StartupMode):
            return value
        text = str(value).strip().lower().replace("_", "-")
        for mode in cls:
            if text in (mode.value, mode.name.lower().replace("_", "-")):
                return mode
        if text in ("earliest", "latest"):
            return cls.EARLIEST if text == "earliest" else cls.LATEST
        raise InvalidJobError(f"unknown startup mode {value!r}; use one of {[m.name for m in cls]}")


@dataclass(frozen=True)
class StoppingOffsets:
    """Where a bounded source stops (exclusive). Build with the class methods.

    ``latest()`` stops at each partition's end when it is first assigned (the last stable
    offset under ``read_committed``, else the high watermark); ``at_offsets({(topic,
    partition): offset})`` at given offsets (partitions not given: at their end at
    assignment); ``at_timestamp(ms)`` before the first record with a timestamp >= ``ms`` (at
    the end at assignment when there is none).
    """

    kind: str
    offsets: Mapping[TP, int] = field(default_factory=dict)
    timestamp_ms: int | None = None

    @classmethod
    def latest(cls) -> StoppingOffsets:
        return cls("latest")

    @classmethod
    def at_offsets(cls, offsets: Mapping[TP, int]) -> StoppingOffsets:
        checked = {_tp(key): _offset(off, "stopping offset") for key, off in offsets.items()}
        return cls("offsets", checked)

    @classmethod
    def at_timestamp(cls, timestamp_ms: int) -> StoppingOffsets:
        return cls("timestamp", timestamp_ms=int(timestamp_ms))

    def describe(self) -> str:
        if self.kind == "offsets":
            return f"offsets {dict(self.offsets)}"
        if self.kind == "timestamp":
            return f"timestamp {self.timestamp_ms}"
        return "latest offsets at start"


def _tp(key: Any) -> TP:
    try:
        topic, partition = key
    except (TypeError, ValueError):
        raise InvalidJobError(f"expected a (topic, partition) key, got {key!r}") from None
    if not isinstance(topic, str) or not isinstance(partition, int) or partition < 0:
        raise InvalidJobError(f"expected a (topic, partition) key, got {key!r}")
    return (topic, partition)


def _offset(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidJobError(f"{what} must be an int >= 0, got {value!r}")
    return value


def check_specific_offsets(offsets: Mapping[Any, Any]) -> dict[TP, int]:
    return {_tp(key): _offset(off, "specific offset") for key, off in offsets.items()}


# -- resolution against the broker ------------------------------------------------------------


def resolve_start_offsets(
    lookup: OffsetLookup,
    partitions: Sequence[TP],
    *,
    mode: StartupMode,
    reset_strategy: str,
    specific: Mapping[TP, int] | None = None,
    timestamp_ms: int | None = None,
) -> dict[TP, int]:
    """The start offset of each partition under ``mode`` (EARLIEST stays a sentinel)."""
    parts = list(partitions)
    if mode is StartupMode.EARLIEST:
        return dict.fromkeys(parts, EARLIEST)
    if mode is StartupMode.LATEST:
        return lookup.ends(parts)
    if mode is StartupMode.TIMESTAMP:
        assert timestamp_ms is not None
        found = lookup.for_timestamp(parts, timestamp_ms)
        # no record at or after the timestamp: start at the end, like Flink
        found.update(lookup.ends([tp for tp in parts if tp not in found]))
        return found
    out: dict[TP, int] = {}
    if mode is StartupMode.SPECIFIC_OFFSETS:
        given = specific or {}
        out.update({tp: given[tp] for tp in parts if tp in given})
    rest = [tp for tp in parts if tp not in out]
    out.update(lookup.committed(rest))
    without = [tp for tp in rest if tp not in out]
    if without:
        if reset_strategy == "earliest":
            out.update(dict.fromkeys(without, EARLIEST))
        elif reset_strategy == "latest":
            out.update(lookup.ends(without))
        else:
            names = ", ".join(split_id(t, p) for t, p in sorted(without))
            raise KafkaSourceError(
                f"no committed offset for {names} and auto.offset.reset is "
                f"{reset_strategy!r}; commit offsets for the group or choose another strategy"
            )
    return out


def resolve_stopping_offsets(
    lookup: OffsetLookup, partitions: Sequence[TP], stopping: StoppingOffsets
) -> dict[TP, int]:
    """The exclusive stopping offset of each partition."""
    parts = list(partitions)
    out: dict[TP, int] = {}
    if stopping.kind == "offsets":
        out.update({tp: stopping.offsets[tp] for tp in parts if tp in stopping.offsets})
    elif stopping.kind == "timestamp":
        assert stopping.timestamp_ms is not None
        out.update(lookup.for_timestamp(parts, stopping.timestamp_ms))
    out.update(lookup.ends([tp for tp in parts if tp not in out]))
    return out
