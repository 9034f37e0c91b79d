"""Checkpoint hooks for user functions: operator state in, operator state out, and completion
notifications."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from strom.functions.context import FunctionInitializationContext, FunctionSnapshotContext


class CheckpointedFunction(ABC):
    """A function with operator state (seed §3.2, §3.4).

    ``initialize_state`` runs before ``open`` — on a fresh start and on restore (see
    ``ctx.is_restored()``); ``snapshot_state`` runs when a checkpoint is taken, between two
    records, and must copy the function's in-memory position into its state objects.
    """

    @abstractmethod
    def snapshot_state(self, ctx: FunctionSnapshotContext) -> None: ...

    @abstractmethod
    def initialize_state(self, ctx: FunctionInitializationContext) -> None: ...


@runtime_checkable
class CheckpointListener(Protocol):
    """Anything with these methods is told when a checkpoint completes or is aborted."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None: ...

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None: ...
