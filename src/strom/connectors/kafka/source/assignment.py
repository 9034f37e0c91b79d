"""Which subtask reads which Kafka partition: Flink's formula, bit for bit.

Partitions are dealt by the source itself, never by Kafka's group coordinator (seed §3.12):
partition ``p`` of topic ``t`` belongs to subtask ``(start + p) % N`` where
``start = ((h(t) * 31) & 0x7FFFFFFF) % N`` and ``h`` is Java's ``String.hashCode``. This is
``KafkaSourceEnumerator.getSplitOwner`` (and the legacy ``KafkaTopicPartitionAssigner``), so a
job assigns partitions exactly as the same job on Flink would. The partitions of one topic go
round-robin from a topic-dependent start, so several topics spread over all subtasks; every
subtask can compute the owner of any partition on its own, which is what lets each reader
discover partitions and filter restored state without a coordinator.
"""

from __future__ import annotations

__all__ = ["java_string_hashcode", "split_owner"]

_MASK32 = 0xFFFFFFFF


def _to_int32(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value & 0x80000000 else value


def java_string_hashcode(text: str) -> int:
    """Java's ``String.hashCode()``: ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 code units,
    in 32-bit two's complement (so it overflows exactly as Java's ``int`` does)."""
    units = text.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & _MASK32
    return _to_int32(h)


def split_owner(topic: str, partition: int, parallelism: int) -> int:
    """The subtask index (0-based) that reads ``partition`` of ``topic`` at ``parallelism``."""
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    # Java multiplies in int (overflowing) before masking the sign bit off.
    start = (_to_int32(java_string_hashcode(topic) * 31) & 0x7FFFFFFF) % parallelism
    return (start + partition) % parallelism
