"""Which partition a record goes to (seed 3.14: by default, by the sink instance index).

A partitioner sees the element, its serialized key and value, the target topic and that
topic's partition ids, and returns a partition id — or ``None`` to let the Kafka client choose
by hashing the key (Kafka's own default). A record that names its partition
(``ProducerRecord.partition``) bypasses the partitioner.

* :class:`FixedPartitioner` (the default, Flink's ``FlinkFixedPartitioner``): sink subtask
  *i* writes every record to partition ``partitions[i % len(partitions)]``. Few subtasks and
  many partitions leave partitions empty; many subtasks share partitions.
* :class:`KeyHashPartitioner` (Kafka's default): the client hashes the key with murmur2, the
  Java client's hash, so keys land where a Java producer would put them; records without a key
  are spread at random.
* :class:`RoundRobinPartitioner`: each subtask cycles through all partitions.
* any callable ``(element, key, value, topic, partitions) -> int | None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FixedPartitioner",
    "KafkaPartitioner",
    "KeyHashPartitioner",
    "RoundRobinPartitioner",
    "as_partitioner",
]


@runtime_checkable
class KafkaPartitioner(Protocol):
    """Chooses a partition per record (Flink's ``FlinkKafkaPartitioner``).

    ``needs_partitions`` False means :meth:`partition` ignores the partition list, so the sink
    need not look it up.
    """

    needs_partitions: bool

    def open(self, subtask_index: int, parallelism: int) -> None:
        """Called once per sink subtask before the first record."""

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        """A partition id of ``topic`` (one of ``partitions``), or None for the client's
        key hash."""


class FixedPartitioner:
    """Sink subtask *i* → ``partitions[i % len(partitions)]`` (Flink's default)."""

    needs_partitions = True

    def __init__(self) -> None:
        self._subtask = 0

    def open(self, subtask_index: int, parallelism: int) -> None:
        if subtask_index < 0 or parallelism <= 0:
            raise ValueError(f"bad subtask {subtask_index} of {parallelism}")
        self._subtask = subtask_index

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return partitions[self._subtask % len(partitions)]

    def __repr__(self) -> str:
        return "FixedPartitioner()"


class KeyHashPartitioner:
    """Leave the partition to the client: murmur2 of the key, like the Java client."""

    needs_partitions = False

    def open(self, subtask_index: int, parallelism: int) -> None:
        return None

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return None

    def __repr__(self) -> str:
        return "KeyHashPartitioner()"


class RoundRobinPartitioner:
    """Each subtask cycles through the topic's partitions, starting at its own index so that
    subtasks do not all hit partition 0 with their first records."""

    needs_partitions = True

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._start = 0

    def open(self, subtask_index: int, parallelism: int) -> None:
        self._start = subtask_index
        self._next.clear()

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        n = self._next.get(topic, self._start)
        self._next[topic] = n + 1
        return partitions[n % len(partitions)]

    def __repr__(self) -> str:
        return "RoundRobinPartitioner()"


class _CallablePartitioner:
    needs_partitions = True

    def __init__(
        self, fn: Callable[[Any, bytes | None, bytes | None, str, Sequence[int]], int | None]
    ) -> None:
        self._fn = fn

    def open(self, subtask_index: int, parallelism: int) -> None:
        return None

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return self._fn(element, key, value, topic, partitions)

    def __repr__(self) -> str:
        return f"partitioner {getattr(self._fn, '__qualname__', self._fn)!r}"


def as_partitioner(value: object) -> KafkaPartitioner:
    """A partitioner object from a partitioner or a plain callable."""
    if isinstance(value, KafkaPartitioner):
        return value
    if callable(value):
        return _CallablePartitioner(value)
    raise TypeError(
        "partitioner must be FixedPartitioner(), KeyHashPartitioner(), RoundRobinPartitioner(), "
        f"a KafkaPartitioner or a callable (element, key, value, topic, partitions); got {value!r}"
    )
