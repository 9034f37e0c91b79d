"""The exceptions strom raises, in one tree.

::

    StromError
    ├── InvalidJobError          the job cannot be built: bad argument, bad graph (build time)
    ├── JobExecutionError        a running job failed; names operator, subtask, original traceback
    │   └── JobCancelledError    the job was cancelled before it finished
    ├── StateError               misuse of state (no current key, unknown descriptor, ...)
    └── ConnectorError           an external system failed in a way the policy did not absorb

Formats raise their own ``DeserializationError`` / ``SerializationError`` (``strom.formats``),
which connectors wrap with the record's origin before applying their bad-record policy.
"""

from __future__ import annotations


class StromError(Exception):
    """Base of every error strom raises on purpose."""


class InvalidJobError(StromError, ValueError):
    """The job description is invalid; raised while building, before anything runs."""


class JobExecutionError(StromError):
    """A task of a running job failed.

    ``operator`` and ``subtask`` name where; ``task_traceback`` is the formatted traceback of the
    original exception, which is also chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        job_name: str = "",
        operator: str = "",
        subtask: int = -1,
        task_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.operator = operator
        self.subtask = subtask
        self.task_traceback = task_traceback

    def __str__(self) -> str:
        text = super().__str__()
        if self.task_traceback:
            text += "\n\nOriginal traceback (task thread):\n" + self.task_traceback.rstrip()
        return text


class JobCancelledError(JobExecutionError):
    """The job was cancelled (by the job client, Ctrl-C, or ``cancel()``)."""


class StateError(StromError, RuntimeError):
    """State was used wrongly: keyed state outside a keyed context, a clashing descriptor, ..."""


class ConnectorError(StromError):
    """An external system failed and the configured policy says to fail the job."""
