"""A Kafka partition as a split of the source, and its checkpointed form.

The state of a subtask is one entry per partition it owns: ``(topic, partition, next_offset)``,
or ``(topic, partition, next_offset, stopping_offset)`` in bounded mode, so a restored bounded
job stops where the original run would have, not at offsets recomputed after the failure.
``next_offset`` is the offset of the next record to read, i.e. the position *after* the last
record returned by ``poll``; it can be :data:`EARLIEST` for a partition not read yet that
starts from its beginning (a position that stays right however long the job waits).
Entries are plain tuples: small, picklable, and readable by any later version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EARLIEST", "KafkaPartitionSplit", "parse_state_entry", "split_id"]

EARLIEST = -2
"""Start offset of a partition read from its beginning (librdkafka's ``OFFSET_BEGINNING``)."""


def split_id(topic: str, partition: int) -> str:
    """The split name in ``Batch.split``, metrics and logs (Flink's ``topic-partition``)."""
    return f"{topic}-{partition}"


@dataclass
class KafkaPartitionSplit:
    """One partition a reader owns: where it is, and where it stops (bounded mode)."""

    topic: str
    partition: int
    next_offset: int
    stopping_offset: int | None = None
    finished: bool = False
    stop_seen: bool = False
    """A record at or past ``stopping_offset`` (or the partition's end there) was seen."""

    @property
    def id(self) -> str:
        return split_id(self.topic, self.partition)

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def state_entry(self) -> tuple[Any, ...]:
        if self.stopping_offset is None:
            return (self.topic, self.partition, self.next_offset)
        return (self.topic, self.partition, self.next_offset, self.stopping_offset)


def parse_state_entry(entry: Any) -> KafkaPartitionSplit:
    """A split from a state entry; rejects anything that is not one, naming it."""
    stop: Any = None
    try:
        if len(entry) == 4:
            topic, partition, offset, stop = entry
        else:
            topic, partition, offset = entry
    except (TypeError, ValueError):
        raise ValueError(
            f"KafkaSource cannot restore from state entry {entry!r}; "
            "expected (topic, partition, next_offset[, stopping_offset])"
        ) from None
    valid = (
        isinstance(topic, str)
        and isinstance(partition, int)
        and partition >= 0
        and isinstance(offset, int)
        and (offset >= 0 or offset == EARLIEST)
        and (stop is None or (isinstance(stop, int) and stop >= 0))
    )
    if not valid:
        raise ValueError(f"KafkaSource cannot restore from state entry {entry!r}")
    return KafkaPartitionSplit(topic, partition, offset, stop)
