"""The pull-based source contract that every built-in source implements.

A ``Source`` is a serializable description; the runtime asks it for one ``SourceReader`` per
subtask. The runtime owns the loop: it calls ``poll`` between checkpoints, asks for
``snapshot_state`` at a checkpoint barrier, and passes the restored state back to ``open``.

* ``poll`` returns the next records (a list or a ``Batch`` with timestamps), an empty list when
  nothing is available right now, or ``None`` once the reader is finished (bounded input). It may
  block for at most ``ctx.max_poll_wait`` seconds, so cancellation and checkpoints stay prompt.
* ``snapshot_state`` returns small, picklable split positions *after* the last record returned
  by ``poll`` — the position is the state; a fresh start is ``open(None)``.
* On restore every subtask receives the union of all subtasks' snapshots and keeps the entries
  it owns under the current parallelism, so a job can be restored at another parallelism.
* Side effects that must survive only completed checkpoints (offset commits, acks) belong in
  ``notify_checkpoint_complete``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base.guarantee import DeliveryGuarantee
from strom.metrics import MetricGroup

T = TypeVar("T")


class Batch(Generic[T]):
    """Records with optional event-time timestamps (ms) in parallel lists.

    ``split`` names the split (file, Kafka partition, ...) all records of the batch come
    from: with a watermark strategy the runtime then keeps one watermark generator per split
    and emits the minimum over active splits (per-partition watermarks).
    """

    __slots__ = ("split", "timestamps", "values")

    def __init__(
        self, values: list[T], timestamps: list[int] | None = None, split: str | None = None
    ) -> None:
        if timestamps is not None and len(timestamps) != len(values):
            raise ValueError("a Batch needs one timestamp per value")
        self.values = values
        self.timestamps = timestamps
        self.split = split

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class ReaderContext:
    """What a reader knows about where it runs."""

    subtask_index: int
    parallelism: int
    operator_name: str = "source"
    attempt: int = 0
    max_poll_wait: float = 0.05
    metrics: MetricGroup = field(default_factory=MetricGroup)
    checkpointing: bool = False
    """Whether the job takes checkpoints (side effects then wait for their completion)."""
    processing_time: Callable[[], int] = field(default=lambda: 0)


class SourceReader(ABC, Generic[T]):
    """Reads the splits one subtask owns. Called from a single thread."""

    def open(self, restored_state: list[Any] | None) -> None:
        """Start reading; ``restored_state`` is None on a fresh start."""

    @abstractmethod
    def poll(self, max_records: int) -> list[T] | Batch[T] | None:
        """Up to ``max_records`` records; ``[]`` if none now; ``None`` when finished."""

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        """Positions after the last polled record. Stateless readers return ``[]``."""
        return []

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint including the last snapshot is durable."""

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """The checkpoint was abandoned."""

    def active_splits(self) -> list[str] | None:
        """Ids (as in ``Batch.split``) of the splits this reader reads now, or None if it does
        not say. With a watermark strategy, event time waits for every active split — also
        those that have not produced a record yet — so no split runs ahead of the others."""
        return None

    def is_idle(self) -> bool:
        """True while this reader has nothing to read at all (e.g. no partitions assigned):
        it then does not hold back event time downstream."""
        return False

    def wakeup(self) -> None:
        """Make a blocked ``poll`` return soon; called from another thread on cancel."""

    def close(self) -> None:
        """Release resources; called once, also after failures."""


class Source(ABC, Generic[T]):
    """A source description; subclasses declare the guarantees they can give.

    ``supported_guarantees`` lists what the connector can provide with checkpointing on;
    ``delivery_guarantee`` is what this configured instance provides.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset()
    bounded: bool = True
    max_parallelism: int | None = None
    """Upper bound on the subtasks this source can use (1 for non-parallel sources)."""

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        order = [DeliveryGuarantee.EXACTLY_ONCE, DeliveryGuarantee.AT_LEAST_ONCE]
        for g in order:
            if g in self.supported_guarantees:
                return g
        return DeliveryGuarantee.AT_MOST_ONCE

    @abstractmethod
    def create_reader(self, ctx: ReaderContext) -> SourceReader[T]: ...

    def describe(self) -> str:
        return type(self).__name__
