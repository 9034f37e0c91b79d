"""``run_to_completion``: run a whole (bounded) job in a test and get its output."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from strom.api import DataStream, StreamExecutionEnvironment
    from strom.runtime.job import JobExecutionResult

__all__ = ["run_to_completion"]


@overload
def run_to_completion(
    env_or_stream: DataStream, *, timeout: float = ..., job_name: str | None = ...
) -> list[Any]: ...


@overload
def run_to_completion(
    env_or_stream: StreamExecutionEnvironment,
    *,
    timeout: float = ...,
    job_name: str | None = ...,
) -> JobExecutionResult: ...


def run_to_completion(
    env_or_stream: DataStream | StreamExecutionEnvironment,
    *,
    timeout: float = 30.0,
    job_name: str | None = None,
) -> list[Any] | JobExecutionResult:
    """Run a bounded job to its end.

    Given a ``DataStream``, collect it (``execute_and_collect``) and return every record.
    Given an environment, execute the sinks defined on it and return the ``JobExecutionResult``.
    A failure of the job raises ``JobExecutionError``; a job still running after ``timeout``
    seconds (an unbounded source, a hang) is cancelled and ``TimeoutError`` raised.
    """
    from strom.api import DataStream, StreamExecutionEnvironment

    if isinstance(env_or_stream, StreamExecutionEnvironment):
        client = env_or_stream.execute_async(job_name or "strom job")
        try:
            return client.wait(timeout)
        except TimeoutError:
            client.cancel()
            try:
                client.wait(30)
            except Exception:  # the timeout is the error the caller needs to see
                pass
            raise
    if not isinstance(env_or_stream, DataStream):
        raise TypeError(
            f"run_to_completion expects a DataStream or an environment, got {env_or_stream!r}"
        )
    it = env_or_stream.execute_and_collect(job_name or "run_to_completion")
    assert not isinstance(it, list)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        it.close()

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    records: list[Any] = []
    watchdog.start()
    try:
        with it:
            for record in it:
                records.append(record)
    except Exception as e:
        if timed_out.is_set():
            raise TimeoutError(
                f"job still running after {timeout} s; {len(records)} records so far"
            ) from e
        raise
    finally:
        watchdog.cancel()
        watchdog.join()  # if it fired: the job is cancelled and gone before we return
    if timed_out.is_set():
        raise TimeoutError(f"job still running after {timeout} s; {len(records)} records so far")
    return records
