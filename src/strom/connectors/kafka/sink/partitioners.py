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

Own partitioners subclass :class:`KafkaPartitioner` and implement :meth:`~KafkaPartitioner.
partition`; an object with ``open`` and ``partition`` methods of the same signatures is
accepted too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "FixedPartitioner",
    "KafkaPartitioner",
    "KeyHashPartitioner",
    "RoundRobinPartitioner",
    "as_partitioner",
]


class KafkaPartitioner:
    """Chooses a partition per record (Flink's ``FlinkKafkaPartitioner``).

    Subclasses implement :meth:`partition`. Two class attributes let the sink skip work on its
    hot path:

    * ``needs_partitions`` — ``False`` means :meth:`partition` ignores the partition list, so
      the sink need not look it up;
    * ``per_record`` — ``False`` means the answer depends only on the topic (and the subtask),
      so the sink asks once per batch and topic instead of once per record (``element``,
      ``key`` and ``value`` are then ``None``).
    """

    needs_partitions: bool = True
    per_record: bool = True

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
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FixedPartitioner(KafkaPartitioner):
    """Sink subtask *i* → ``partitions[i % len(partitions)]`` (Flink's default)."""

    per_record = False

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


class KeyHashPartitioner(KafkaPartitioner):
    """Leave the partition to the client: murmur2 of the key, like the Java client."""

    needs_partitions = False
    per_record = False

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        return None


class RoundRobinPartitioner(KafkaPartitioner):
    """Each subtask cycles through the topic's partitions, starting at its own index so that
    subtasks do not all hit partition 0 with their first records."""

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


class _DuckPartitioner(KafkaPartitioner):
    """Adapts an object with ``partition`` (and optionally ``open``) methods."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.needs_partitions = bool(getattr(target, "needs_partitions", True))
        self.per_record = bool(getattr(target, "per_record", True))

    def open(self, subtask_index: int, parallelism: int) -> None:
        opener = getattr(self._target, "open", None)
        if callable(opener):
            opener(subtask_index, parallelism)

    def partition(
        self,
        element: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partitions: Sequence[int],
    ) -> int | None:
        answer: int | None = self._target.partition(element, key, value, topic, partitions)
        return answer

    def __repr__(self) -> str:
        return repr(self._target)


class _CallablePartitioner(KafkaPartitioner):
    def __init__(
        self, fn: Callable[[Any, bytes | None, bytes | None, str, Sequence[int]], int | None]
    ) -> None:
        self._fn = fn

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
    """A partitioner object from a partitioner, a partitioner-like object or a callable."""
    if isinstance(value, KafkaPartitioner):
        return value
    if callable(getattr(value, "partition", None)):
        return _DuckPartitioner(value)
    if callable(value):
        return _CallablePartitioner(value)
    raise TypeError(
        "partitioner must be FixedPartitioner(), KeyHashPartitioner(), RoundRobinPartitioner(), "
        f"a KafkaPartitioner or a callable (element, key, value, topic, partitions); got {value!r}"
    )
