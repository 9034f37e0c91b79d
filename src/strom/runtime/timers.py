"""Timers of one keyed operator subtask: event-time and processing-time, per key and
namespace (a window, or None for process functions).

Each domain is a heap ordered by time plus a set that deduplicates (registering the same timer
twice fires it once) and makes deletion cheap (deleted entries are skipped when popped).
Timers are part of the operator's checkpoint, tagged with the key-group range like keyed state,
so they are restored — also at another parallelism — with the keys they belong to.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from strom.runtime.context import OperatorContext
from strom.runtime.keygroups import key_group_of, key_group_range
from strom.runtime.state import HeapKeyedStateBackend

Fire = Callable[[int, Any, Any], None]
"""``fire(timestamp, key, namespace)``; the backend's current key is set before the call."""


class _Domain:
    def __init__(self) -> None:
        self.heap: list[tuple[int, int, Any, Any]] = []
        self.live: set[tuple[int, Any, Any]] = set()
        self._seq = itertools.count()

    def add(self, ts: int, key: Any, ns: Any) -> None:
        entry = (ts, key, ns)
        if entry not in self.live:
            self.live.add(entry)
            heapq.heappush(self.heap, (ts, next(self._seq), key, ns))

    def add_all(self, entries: Iterable[tuple[int, Any, Any]]) -> None:
        add = self.add
        for ts, key, ns in entries:
            add(ts, key, ns)

    def remove(self, ts: int, key: Any, ns: Any) -> None:
        self.live.discard((ts, key, ns))

    def peek(self) -> int | None:
        heap, live = self.heap, self.live
        while heap and (heap[0][0], heap[0][2], heap[0][3]) not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, until: int) -> tuple[int, Any, Any] | None:
        ts = self.peek()
        if ts is None or ts > until:
            return None
        t, _, key, ns = heapq.heappop(self.heap)
        self.live.discard((t, key, ns))
        return t, key, ns


class TimerService:
    def __init__(self, backend: HeapKeyedStateBackend) -> None:
        self.backend = backend
        self.event = _Domain()
        self.processing = _Domain()

    @classmethod
    def for_operator(
        cls, ctx: OperatorContext, snapshots: list[dict[str, Any]] | None
    ) -> TimerService:
        """The timers of a keyed operator subtask: those in its operator ``snapshots`` (under
        ``"timers"``) whose keys fall in the subtask's key groups."""
        backend = ctx.keyed_backend
        assert backend is not None, "timers need a keyed state backend"
        service = cls(backend)
        if snapshots is not None:
            owned = key_group_range(ctx.subtask_index, ctx.max_parallelism, ctx.parallelism)
            service.restore([s["timers"] for s in snapshots if "timers" in s], owned)
        return service

    def register_event_time_timer(self, ts: int, namespace: Any = None) -> None:
        self.event.add(int(ts), self.backend.get_current_key(), namespace)

    def register_event_time_timers(self, timers: Iterable[tuple[int, Any, Any]]) -> None:
        """Many ``(time, key, namespace)`` timers at once, each for its own key."""
        self.event.add_all(timers)

    def delete_event_time_timer(self, ts: int, namespace: Any = None) -> None:
        self.event.remove(int(ts), self.backend.get_current_key(), namespace)

    def register_processing_time_timer(self, ts: int, namespace: Any = None) -> None:
        self.processing.add(int(ts), self.backend.get_current_key(), namespace)

    def delete_processing_time_timer(self, ts: int, namespace: Any = None) -> None:
        self.processing.remove(int(ts), self.backend.get_current_key(), namespace)

    def advance_watermark(self, watermark: int, fire: Fire) -> None:
        """Fire every event-time timer <= ``watermark``, in time order (a timer registered by a
        firing timer fires in the same call if it is due)."""
        self._fire(self.event, watermark, fire)

    def advance_processing_time(self, now: int, fire: Fire) -> None:
        self._fire(self.processing, now, fire)

    def next_processing_time(self) -> int | None:
        return self.processing.peek()

    def _fire(self, domain: _Domain, until: int, fire: Fire) -> None:
        backend = self.backend
        while True:
            due = domain.pop_due(until)
            if due is None:
                return
            ts, key, ns = due
            backend.current_key = key
            fire(ts, key, ns)

    def snapshot(self) -> dict[str, Any]:
        groups = self.backend.key_groups
        return {
            "key_groups": (groups.start, groups.stop),
            "event": list(self.event.live),
            "processing": list(self.processing.live),
        }

    def restore(self, snapshots: Iterable[dict[str, Any]], owned: range) -> None:
        maxp = self.backend.max_parallelism
        for snap in snapshots:
            start, stop = snap["key_groups"]
            whole = owned.start <= start and stop <= owned.stop
            for name, domain in (("event", self.event), ("processing", self.processing)):
                for ts, key, ns in snap[name]:
                    if whole or key_group_of(key, maxp) in owned:
                        domain.add(ts, key, ns)
