"""What a running or finished job looks like from outside: status, result, client."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobStatus(Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"
    FAILING = "FAILING"
    FAILED = "FAILED"
    RESTARTING = "RESTARTING"
    FINISHED = "FINISHED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.CANCELED, JobStatus.FAILED, JobStatus.FINISHED)


@dataclass
class JobExecutionResult:
    """Returned by ``execute``: accumulators merged over subtasks, metrics per operator."""

    job_id: str
    job_name: str
    net_runtime_ms: int
    accumulators: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get_accumulator_result(self, name: str) -> Any:
        return self.accumulators[name]

    def get_net_runtime(self) -> int:
        return self.net_runtime_ms


class JobClient(ABC):
    """Handle of a job started with ``execute_async``."""

    job_id: str

    @abstractmethod
    def get_job_status(self) -> JobStatus: ...

    @abstractmethod
    def cancel(self) -> None:
        """Ask the job to stop; returns at once (``wait`` for it to end)."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> JobExecutionResult:
        """Block until the job ends; its result, or raise ``JobExecutionError``."""

    @abstractmethod
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Current metrics per operator (summed over subtasks)."""

    def get_job_execution_result(self, timeout: float | None = None) -> JobExecutionResult:
        return self.wait(timeout)
