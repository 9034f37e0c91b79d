"""Checkpoints: configuration, the coordinator (asynchronous barrier snapshots) and storage.

See ``coordinator.py`` for the protocol step by step and ``storage.py`` for the on-disk layout.
"""

from strom.runtime.checkpoint.config import (
    CheckpointConfig,
    CheckpointingMode,
    ExternalizedCheckpointRetention,
)
from strom.runtime.checkpoint.storage import CheckpointStorage, CompletedCheckpoint

__all__ = [
    "CheckpointConfig",
    "CheckpointStorage",
    "CheckpointingMode",
    "CompletedCheckpoint",
    "ExternalizedCheckpointRetention",
]
