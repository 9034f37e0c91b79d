"""Checkpoint settings (PyFlink's ``CheckpointConfig``), validated when set."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from strom.errors import InvalidJobError


class CheckpointingMode(Enum):
    EXACTLY_ONCE = "exactly_once"
    """Barriers are aligned at tasks with several inputs: state reflects each record once."""
    AT_LEAST_ONCE = "at_least_once"
    """No alignment: faster under skew; after a restore some records affect state twice."""


class ExternalizedCheckpointRetention(Enum):
    DELETE_ON_CANCELLATION = "delete_on_cancellation"
    """Checkpoints are deleted when the job is cancelled or finishes; kept when it fails."""
    RETAIN_ON_CANCELLATION = "retain_on_cancellation"
    """Checkpoints are kept whatever happens (restore later with ``--from-checkpoint``)."""


@dataclass
class CheckpointConfig:
    interval_ms: int = 0
    """0: checkpointing disabled."""
    mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    timeout_ms: int = 10 * 60 * 1000
    min_pause_ms: int = 0
    tolerable_failures: int = 0
    max_retained: int = 1
    retention: ExternalizedCheckpointRetention = (
        ExternalizedCheckpointRetention.DELETE_ON_CANCELLATION
    )
    storage: str = "file://.strom/checkpoints"
    """Where checkpoints go: a local path or any fsspec URL (``s3://bucket/prefix``)."""
    storage_options: dict[str, Any] = field(default_factory=dict)
    """Passed to the fsspec filesystem (e.g. ``{"client_kwargs": {"endpoint_url": ...}}``);
    never logged, as it may hold credentials."""

    @property
    def enabled(self) -> bool:
        return self.interval_ms > 0

    def set_checkpoint_interval(self, interval_ms: int) -> CheckpointConfig:
        if interval_ms < 1:
            raise InvalidJobError(f"checkpoint interval must be >= 1 ms, got {interval_ms}")
        self.interval_ms = interval_ms
        return self

    def set_checkpointing_mode(self, mode: CheckpointingMode) -> CheckpointConfig:
        self.mode = mode
        return self

    def set_checkpoint_timeout(self, timeout_ms: int) -> CheckpointConfig:
        if timeout_ms < 1:
            raise InvalidJobError(f"checkpoint timeout must be >= 1 ms, got {timeout_ms}")
        self.timeout_ms = timeout_ms
        return self

    def set_min_pause_between_checkpoints(self, min_pause_ms: int) -> CheckpointConfig:
        if min_pause_ms < 0:
            raise InvalidJobError(f"min pause must be >= 0 ms, got {min_pause_ms}")
        self.min_pause_ms = min_pause_ms
        return self

    def set_tolerable_checkpoint_failure_number(self, number: int) -> CheckpointConfig:
        if number < 0:
            raise InvalidJobError(f"tolerable checkpoint failures must be >= 0, got {number}")
        self.tolerable_failures = number
        return self

    def set_max_retained_checkpoints(self, number: int) -> CheckpointConfig:
        if number < 1:
            raise InvalidJobError(f"retained checkpoints must be >= 1, got {number}")
        self.max_retained = number
        return self

    def set_externalized_checkpoint_retention(
        self, retention: ExternalizedCheckpointRetention
    ) -> CheckpointConfig:
        self.retention = retention
        return self

    def set_checkpoint_storage_dir(self, uri: str, **storage_options: Any) -> CheckpointConfig:
        if not uri:
            raise InvalidJobError("checkpoint storage must be a non-empty path or URL")
        self.storage = uri
        self.storage_options = dict(storage_options)
        return self

    def get_checkpoint_storage_dir(self) -> str:
        return self.storage
