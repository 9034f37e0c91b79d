"""Bounded channels into a task: one ``InputGate`` per task, one bounded queue per channel.

A producer blocks in ``put`` while its channel is full — that is backpressure. The consumer
takes from any channel that is not blocked; blocking single channels is how a task aligns
checkpoint barriers in exactly-once mode (a channel that delivered barrier *n* is held back until
all channels delivered it). ``cancel`` wakes every waiter so cancellation is prompt.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class ChannelCancelled(Exception):
    """The gate was cancelled while a producer or consumer waited on it."""


class InputGate:
    def __init__(self, num_channels: int, capacity: int = 8) -> None:
        if num_channels < 1:
            raise ValueError("an input gate needs at least one channel")
        self.num_channels = num_channels
        self.capacity = capacity
        self._queues: list[deque[Any]] = [deque() for _ in range(num_channels)]
        self._blocked = [False] * num_channels
        self._cond = threading.Condition(threading.Lock())
        self._cancelled = False
        self._next = 0  # round-robin start so no channel starves the others

    def put(self, channel: int, element: Any, *, force: bool = False) -> None:
        """Append ``element``; waits while the channel is full (unless ``force``)."""
        with self._cond:
            q = self._queues[channel]
            while not force and len(q) >= self.capacity and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                raise ChannelCancelled()
            q.append(element)
            self._cond.notify_all()

    def get(self, timeout: float | None) -> tuple[int, Any] | None:
        """The next element of any unblocked channel, or None after ``timeout`` seconds."""
        with self._cond:
            while True:
                if self._cancelled:
                    raise ChannelCancelled()
                n = self.num_channels
                start = self._next
                for i in range(n):
                    ch = (start + i) % n
                    q = self._queues[ch]
                    if q and not self._blocked[ch]:
                        element = q.popleft()
                        self._next = (ch + 1) % n
                        self._cond.notify_all()
                        return ch, element
                if not self._cond.wait(timeout):
                    return None

    def block(self, channel: int) -> None:
        with self._cond:
            self._blocked[channel] = True

    def unblock_all(self) -> None:
        with self._cond:
            self._blocked = [False] * self.num_channels
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues)
