"""The batch sink contract that every built-in sink implements.

A ``Sink`` is a description; the runtime creates one ``SinkWriter`` per subtask and calls:

* ``write(values, timestamps)`` for every batch that reaches the sink;
* ``flush(end_of_input)`` before it takes a snapshot and once after the last batch — an
  at-least-once sink makes everything written so far durable here (the seed's flush on
  checkpoint);
* ``snapshot_state`` to keep what must survive a failure (buffered records, transaction ids);
  on restore a subtask gets its share of the old subtasks' lists (round-robin on rescale);
* ``notify_checkpoint_complete`` — the only place for side effects that must happen exactly
  once per completed checkpoint (commits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base.guarantee import DeliveryGuarantee
from strom.metrics import MetricGroup

T = TypeVar("T")


@dataclass(frozen=True)
class WriterContext:
    subtask_index: int
    parallelism: int
    operator_name: str = "sink"
    attempt: int = 0
    metrics: MetricGroup = field(default_factory=MetricGroup)
    checkpointing: bool = False
    """Whether the job takes checkpoints (side effects then wait for their completion)."""
    processing_time: Callable[[], int] = field(default=lambda: 0)


class SinkWriter(ABC, Generic[T]):
    """Writes one subtask's records. Called from a single thread."""

    def open(self, restored_state: list[Any] | None) -> None:
        """Start; ``restored_state`` is None on a fresh start."""

    @abstractmethod
    def write(self, values: list[T], timestamps: list[int] | None) -> None: ...

    def flush(self, end_of_input: bool) -> None:
        """Make everything written so far durable (or as durable as the guarantee says)."""

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return []

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint is durable: commit what was prepared for it."""

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """The checkpoint was abandoned."""

    def close(self) -> None:
        """Release resources; called once, also after failures."""


class Sink(ABC, Generic[T]):
    """A sink description; subclasses declare the guarantees they can give."""

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset()
    max_parallelism: int | None = None

    @property
    def delivery_guarantee(self) -> DeliveryGuarantee:
        for g in (DeliveryGuarantee.EXACTLY_ONCE, DeliveryGuarantee.AT_LEAST_ONCE):
            if g in self.supported_guarantees:
                return g
        return DeliveryGuarantee.AT_MOST_ONCE

    @abstractmethod
    def create_writer(self, ctx: WriterContext) -> SinkWriter[T]: ...

    def describe(self) -> str:
        return type(self).__name__
