"""``TestingSource``: a scripted, replayable source for tests of jobs and of fault tolerance.

It emits a list of items in order, and the list may contain markers that script the run:

- ``TestingSource.EOF`` ends the stream there. The position after the marker is the state, so a
  later run restored from a snapshot taken after it resumes with the next item (Bytewax's EOF).
- ``TestingSource.ABORT`` raises ``TestingSource.Aborted`` the first time it is reached, to
  simulate a crash. Every later run of the same source object skips it, whether it is
  restarted from a checkpoint taken before the marker or starts afresh.
- ``TestingSource.PAUSE(seconds)`` emits nothing for that long (wall-clock time) while the
  source stays alive: checkpoints, flush timeouts and idleness can be tested around it.

Its position is its state: snapshots hold the index after the last item emitted, so with
checkpoints the source is exactly-once, also when restored at another parallelism.

With ``parallel=True`` subtask *i* of *n* emits the items whose index among the items (markers
not counted) is *i* modulo *n*; markers apply to every subtask at their place in the list (each
subtask ends at an EOF; an ABORT fires in whichever subtask reaches it first).

How the state works: each subtask snapshots ``(subtask, parallelism, position, inherited)``,
meaning "every item before ``position`` that this subtask owns has been emitted". A subtask
restored at the same parallelism resumes at its own position. At another parallelism, a
subtask starts at the lowest old position and skips the items the old subtasks' entries say
were emitted; until it has passed the highest old position it carries those old entries on
(``inherited``) so that a second restore still knows them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import DeliveryGuarantee, ReaderContext, Source, SourceReader

__all__ = ["TestingSource"]

T = TypeVar("T")


class _Marker:
    """A singleton marker; pickles and copies to itself so it is recognised by identity."""

    def __init__(self, name: str, global_name: str) -> None:
        self._name = name
        self._global = global_name

    def __repr__(self) -> str:
        return f"TestingSource.{self._name}"

    def __reduce__(self) -> str:
        return self._global


_EOF = _Marker("EOF", "_EOF")
_ABORT = _Marker("ABORT", "_ABORT")


@dataclass(frozen=True)
class _Pause:
    """``TestingSource.PAUSE(seconds)``: emit nothing for ``seconds`` of wall-clock time."""

    seconds: float

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds)) or (
            self.seconds < 0
        ):
            raise ValueError(f"PAUSE needs a finite number of seconds >= 0, got {self.seconds!r}")

    def __repr__(self) -> str:
        return f"TestingSource.PAUSE({self.seconds!r})"


class TestingSourceAborted(Exception):
    """Raised by a ``TestingSource`` reader at an ``ABORT`` marker (``TestingSource.Aborted``)."""

    __test__ = False  # not a pytest test class, despite its name


class _AbortRegistry:
    """Indices of ABORT markers that have fired, shared by every reader of one source."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired: set[int] = set()

    def claim(self, index: int) -> bool:
        """True if the marker at ``index`` had not fired yet (and now has)."""
        with self._lock:
            if index in self._fired:
                return False
            self._fired.add(index)
            return True

    def __copy__(self) -> _AbortRegistry:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _AbortRegistry:
        return self

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"fired": set(self._fired)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._fired = state["fired"]


_Fact = tuple[int, int, int]
"""``(subtask, parallelism, position)``: every item before ``position`` that ``subtask`` of
``parallelism`` owns has been emitted."""


class TestingSource(Source[T], Generic[T]):
    """Emits ``items`` in order, following the markers among them. Guarantee: exactly-once.

    ::

        source = TestingSource([1, 2, TestingSource.PAUSE(0.1), 3, TestingSource.EOF, 4])
        env.from_source(source).sink_to(sink)   # emits 1, 2, (pause), 3, then ends

    Args:
        items: the items and markers; any iterable, materialised once (so a generator is not
            half-consumed by a first run and replayed short by the next).
        parallel: split the items among subtasks; otherwise the source has parallelism 1.
        batch_size: most items per ``poll`` (default: what the runtime asks for). Small
            batches interleave records with checkpoints and with other sources more finely.
    """

    __test__ = False  # not a pytest test class, despite its name

    EOF: ClassVar[_Marker] = _EOF
    ABORT: ClassVar[_Marker] = _ABORT
    PAUSE = _Pause
    Aborted = TestingSourceAborted

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.EXACTLY_ONCE}
    )
    bounded = True

    def __init__(
        self,
        items: Iterable[T | _Marker | _Pause],
        *,
        parallel: bool = False,
        batch_size: int | None = None,
    ) -> None:
        if isinstance(items, str | bytes | dict):
            raise TypeError(f"TestingSource expects a collection of items, got {type(items)}")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.items: Sequence[Any] = tuple(items)
        self.batch_size = batch_size
        self.max_parallelism = None if parallel else 1
        # The index of each entry among the items only (markers: -1) decides its subtask.
        ordinals: list[int] = []
        n = 0
        for item in self.items:
            if _is_marker(item):
                ordinals.append(-1)
            else:
                ordinals.append(n)
                n += 1
        self._ordinals = tuple(ordinals)
        self._aborts = _AbortRegistry()

    def create_reader(self, ctx: ReaderContext) -> SourceReader[T]:
        return _TestingReader(self, ctx)

    def describe(self) -> str:
        n = sum(1 for o in self._ordinals if o >= 0)
        return f"TestingSource ({n} items)"


def _is_marker(item: Any) -> bool:
    return item is _EOF or item is _ABORT or isinstance(item, _Pause)


class _TestingReader(SourceReader[T]):
    def __init__(self, source: TestingSource[T], ctx: ReaderContext) -> None:
        self._items = source.items
        self._ordinals = source._ordinals
        self._aborts = source._aborts
        self._batch_size = source.batch_size
        self._subtask = ctx.subtask_index
        self._parallelism = ctx.parallelism
        self._max_wait = ctx.max_poll_wait
        self._pos = 0  # index of the next entry (item or marker) to look at
        self._inherited: tuple[_Fact, ...] = ()
        self._ended = False
        self._pause_until: float | None = None
        self._wake = threading.Event()

    # -- state ------------------------------------------------------------------------------
    def open(self, restored_state: list[Any] | None) -> None:
        if not restored_state:
            return
        entries = [_parse_entry(e) for e in restored_state]
        own = [
            pos for sub, par, pos, _ in entries if (sub, par) == (self._subtask, self._parallelism)
        ]
        # Same parallelism: our own position says it all. Rescaled: start where the slowest old
        # subtask was; the items the faster ones emitted beyond that are skipped via facts.
        self._pos = own[0] if own else min(pos for _, _, pos, _ in entries)
        facts: set[_Fact] = set()
        for sub, par, pos, inherited in entries:
            facts.add((sub, par, pos))
            facts.update(inherited)
        self._inherited = tuple(sorted(f for f in facts if f[2] > self._pos))

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        # Only facts reaching beyond our position can still cover an item we have not passed.
        inherited = tuple(f for f in self._inherited if f[2] > self._pos)
        return [(self._subtask, self._parallelism, self._pos, inherited)]

    # -- reading ----------------------------------------------------------------------------
    def poll(self, max_records: int) -> list[T] | None:
        if self._ended:
            return None
        if self._pause_until is not None:
            remaining = self._pause_until - time.monotonic()
            if remaining > 0:
                # Block a little (bounded by max_poll_wait, so checkpoints and cancellation stay
                # prompt) rather than have the runtime spin on empty polls.
                if self._wake.wait(min(remaining, self._max_wait)):
                    self._wake.clear()
                return []
            self._pause_until = None
        limit = max_records if self._batch_size is None else min(max_records, self._batch_size)
        items, ordinals = self._items, self._ordinals
        out: list[T] = []
        while self._pos < len(items) and len(out) < limit:
            j = self._pos
            item = items[j]
            if ordinals[j] < 0:
                if out:
                    break  # markers take effect on the next poll, after this batch is out
                self._pos = j + 1
                if item is _EOF:
                    self._ended = True
                    return None
                if item is _ABORT:
                    if self._aborts.claim(j):
                        raise TestingSourceAborted(
                            f"TestingSource.ABORT reached at index {j} (subtask "
                            f"{self._subtask}); a restarted run skips it"
                        )
                    continue
                self._pause_until = time.monotonic() + item.seconds
                return []
            self._pos = j + 1
            if self._owns(ordinals[j]) and not self._emitted_before(j, ordinals[j]):
                out.append(item)
        if not out and self._pos >= len(items):
            self._ended = True
            return None
        return out

    def _owns(self, ordinal: int) -> bool:
        return ordinal % self._parallelism == self._subtask

    def _emitted_before(self, index: int, ordinal: int) -> bool:
        """Whether an earlier run (before a rescaled restore) emitted the item at ``index``."""
        return any(index < pos and ordinal % par == sub for sub, par, pos in self._inherited)

    def wakeup(self) -> None:
        self._wake.set()


def _parse_entry(entry: Any) -> tuple[int, int, int, tuple[_Fact, ...]]:
    try:
        sub, par, pos, inherited = entry
        return (
            int(sub),
            int(par),
            int(pos),
            tuple((int(s), int(p), int(q)) for s, p, q in inherited),
        )
    except (TypeError, ValueError):
        raise ValueError(f"not a TestingSource snapshot entry: {entry!r}") from None
