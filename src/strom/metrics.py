"""Metrics: counters and gauges grouped per operator subtask.

Counters are plain integers updated from one task thread; readers (job client, result) only
read them, so no locking is needed on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Counter:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n

    def get_count(self) -> int:
        return self.count


class MetricGroup:
    """Named counters and gauges of one scope (e.g. ``"map[2]"``), with child groups."""

    def __init__(self, scope: str = "") -> None:
        self.scope = scope
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Callable[[], Any]] = {}
        self._children: dict[str, MetricGroup] = {}

    def counter(self, name: str) -> Counter:
        c = self._counters.get(name)
        if c is None:
            c = self._counters[name] = Counter()
        return c

    def gauge(self, name: str, fn: Callable[[], Any]) -> None:
        self._gauges[name] = fn

    def add_group(self, name: str) -> MetricGroup:
        g = self._children.get(name)
        if g is None:
            g = self._children[name] = MetricGroup(f"{self.scope}.{name}" if self.scope else name)
        return g

    def snapshot_groups(self) -> dict[str, dict[str, Any]]:
        """``{child group name: its flat snapshot}`` for the direct children."""
        return {name: child.snapshot() for name, child in list(self._children.items())}

    def snapshot(self) -> dict[str, Any]:
        """A flat ``{name: value}`` view including child groups (``child.name``)."""
        out: dict[str, Any] = {k: c.count for k, c in self._counters.items()}
        for k, fn in self._gauges.items():
            try:
                out[k] = fn()
            except Exception as e:  # a gauge must never break metric reporting
                out[k] = f"<error: {e}>"
        for name, child in self._children.items():
            for k, v in child.snapshot().items():
                out[f"{name}.{k}"] = v
        return out
