"""Failure reporting: what the executor says when an attempt of a job fails."""

from __future__ import annotations

from strom.errors import JobExecutionError
from strom.runtime.task import Task

__all__ = ["describe_failure", "task_failure_error"]


def describe_failure(root: Task | None, job_failure: BaseException | None) -> str:
    """What made an attempt fail, in a few words: the first failed task's operator, subtask and
    exception, or else the failure outside any task."""
    return (
        f"operator {root.failed_operator!r} (subtask {root.subtask_index + 1}) raised "
        f"{type(getattr(root.failure, 'cause', root.failure)).__name__}"
        if root is not None
        else str(job_failure)
    )


def task_failure_error(job_name: str, task: Task, restarts: int) -> JobExecutionError:
    """The error a job fails with when ``task`` failed: operator, subtask, original exception,
    the task thread's traceback, and how many restarts came before."""
    cause = task.failure
    original = getattr(cause, "cause", cause)
    v = task.vertex
    message = (
        f"Job {job_name!r} failed: operator {task.failed_operator!r} "
        f"(subtask {task.subtask_index + 1}/{v.parallelism}) raised "
        f"{type(original).__name__}: {original}"
    )
    if cause is not original:
        message += f"\n  {cause}"
    if restarts:
        message += f"\n  (after {restarts} restart(s))"
    return JobExecutionError(
        message,
        job_name=job_name,
        operator=task.failed_operator,
        subtask=task.subtask_index,
        task_traceback=task.task_traceback,
    )
