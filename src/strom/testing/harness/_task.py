"""Stand-ins for the task around a push-style source under ``SourceFunctionHarness``.

In a job the task gives its source operator a batch size, a mailbox (snapshots and checkpoint
notifications run there, under the checkpoint lock) and a cancel flag; ``TaskHost`` is that
much of a task. ``MailboxCall`` is one action posted to the mailbox, run at most once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MailboxCall", "TaskHost"]


class TaskHost:
    """Stands in for the task around a source operator: batch size, mailbox, cancel flag."""

    def __init__(self, batch_size: int, flush_interval: float) -> None:
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.cancelled = False
        self._mailbox: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()

    def cancel(self) -> None:
        self.cancelled = True
        with self._cond:
            self._cond.notify_all()

    def post(self, action: Callable[[], None]) -> None:
        with self._cond:
            self._mailbox.append(action)
            self._cond.notify_all()

    def process_mailbox(self) -> None:
        while self._mailbox:
            self._mailbox.popleft()()

    def wait_mailbox(self, timeout: float) -> bool:
        with self._cond:
            if not self._mailbox and not self.cancelled:
                self._cond.wait(timeout)
            return bool(self._mailbox)

    def tick(self) -> None:
        """A source function harness keeps no timers or watermark generators of its own."""


class MailboxCall:
    """A mailbox action that runs at most once: in the source's mailbox, or in the caller if
    ``run`` returned first; or never, if the caller gave up on it (``disarm``)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._claimed = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def _claim(self) -> bool:
        with self._lock:
            claimed, self._claimed = self._claimed, True
            return not claimed

    def disarm(self) -> bool:
        """Make sure it never runs; False if it already runs or ran."""
        return self._claim()

    def __call__(self) -> None:
        if not self._claim():
            return
        try:
            self.result = self._fn()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()
