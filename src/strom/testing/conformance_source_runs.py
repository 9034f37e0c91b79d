"""The reading side of ``SourceConformance``: one scenario's input, and sets of readers over it.

``SourceInput`` is what a scenario wrote (the records, the fixture's handle, the source built on
it); ``ReaderRun`` is one attempt of a job's source at one parallelism: a
``SourceReaderHarness`` per subtask, polled the way the runtime polls, with every emitted record
kept per subtask so that the battery can account for loss, duplicates and order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strom.connectors.base import Source
from strom.testing.conformance import Scenario
from strom.testing.harness import SourceReaderHarness

if TYPE_CHECKING:
    from strom.testing.conformance_sources import SourceConformance

__all__ = ["ReaderRun", "SourceInput", "make_splits"]

D = TypeVar("D")


def make_splits(sizes: Sequence[int]) -> list[list[str]]:
    """The battery's input: split *i* holds ``sizes[i]`` records ``"s<i>-r<index>"``."""
    return [[f"s{i}-r{j:04d}" for j in range(n)] for i, n in enumerate(sizes)]


class SourceInput(Generic[D]):
    """One scenario's input: the records, the fixture's handle for them, and the source."""

    def __init__(self, splits: list[list[str]], handle: D, source: Source[Any], sc: Scenario):
        self.splits = splits
        self.handle = handle
        self.source = source
        self.scenario = sc
        self.records = [r for split in splits for r in split]
        self.position = {r: (i, j) for i, split in enumerate(splits) for j, r in enumerate(split)}


class ReaderRun(Generic[D]):
    """One set of readers over an input: one attempt of a job's source at one parallelism."""

    def __init__(
        self,
        suite: SourceConformance[D],
        inp: SourceInput[D],
        parallelism: int,
        restored: list[list[Any]] | None,
        *,
        attempt: int = 0,
        batch: int = 1024,
    ) -> None:
        self.suite = suite
        self.inp = inp
        self.sc = inp.scenario
        self.label = f"attempt {attempt} at parallelism {parallelism}"
        self.readers: list[SourceReaderHarness[Any]] = []
        self.outputs: list[list[Any]] = [[] for _ in range(parallelism)]
        try:
            for i in range(parallelism):
                with self.sc.step(f"opening subtask {i} ({self.label})"):
                    self.readers.append(
                        SourceReaderHarness(
                            inp.source,
                            i,
                            parallelism,
                            restored_state=restored,
                            max_records=batch,
                            attempt=attempt,
                        )
                    )
            if suite.after_open is not None:
                suite.after_open(inp.handle)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        readers, self.readers = self.readers, []
        for i, reader in enumerate(readers):
            with self.sc.step(f"closing subtask {i} ({self.label})"):
                reader.close()

    def emitted(self) -> list[Any]:
        return [r for out in self.outputs for r in out]

    def poll(self, i: int) -> list[Any] | None:
        reader = self.readers[i]
        if reader.finished:
            return None
        started = time.monotonic()
        with self.sc.step(f"poll of subtask {i} ({self.label})"):
            batch = reader.poll()
        took = time.monotonic() - started
        if took > self.suite.poll_limit:
            self.sc.fail(
                "poll returns promptly",
                f"subtask {i} ({self.label}) blocked in poll for {took:.2f} s "
                f"(limit {self.suite.poll_limit} s; a poll may block for max_poll_wait)",
            )
        if batch is None:
            return None
        with self.sc.step("decoding emitted records"):
            values = [self.suite.decode(v) for v in batch]
            for v in values:
                hash(v)
        self.outputs[i].extend(values)
        return values

    def poll_once(self) -> None:
        for i in range(len(self.readers)):
            self.poll(i)

    def read_some(self, k: int) -> None:
        """Poll each subtask until it emitted ``k`` records, finished, or stayed quiet."""
        bounded = self.inp.source.bounded
        for i in range(len(self.readers)):
            deadline = time.monotonic() + self.suite.timeout
            quiet_since = time.monotonic()
            while len(self.outputs[i]) < k:
                batch = self.poll(i)
                now = time.monotonic()
                if batch is None:
                    break
                if batch:
                    quiet_since = now
                elif not bounded and now - quiet_since >= self.suite.settle:
                    break  # this subtask may own no input at all
                if now >= deadline:
                    self._stalled()

    def read_to_end(self, seen_before: set[Any] | None = None, *, finish: bool = False) -> None:
        """Poll all subtasks in turn until all finished; an unbounded source until every
        record was seen (before, or now) and it then stayed quiet for ``settle`` seconds, or
        with ``finish`` until it finished (returning at the timeout, for the caller to judge).
        """
        bounded = self.inp.source.bounded
        wanted = set(self.inp.records)
        deadline = time.monotonic() + self.suite.timeout
        quiet_since: float | None = None
        while True:
            progressed = False
            unfinished = 0
            for i, reader in enumerate(self.readers):
                # Drain what a subtask has before moving on: an idle subtask's poll blocks for
                # max_poll_wait, which would otherwise be paid once per batch of a busy one.
                while not reader.finished and self.poll(i) and time.monotonic() < deadline:
                    progressed = True
                if not reader.finished:
                    unfinished += 1
            if not unfinished:
                return
            now = time.monotonic()
            if not bounded and not finish:
                seen = (seen_before or set()).union(*self.outputs)
                if progressed or not seen >= wanted:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= self.suite.settle:
                    return
            if now >= deadline:
                if bounded:
                    self._stalled()
                return  # unbounded: the accounting names what never came
            if not progressed:
                time.sleep(0.002)  # a reader that returns [] without blocking must not spin us

    def _stalled(self) -> None:
        pending = [i for i, r in enumerate(self.readers) if not r.finished]
        self.sc.fail(
            "end of input (a bounded source returns None once its input is read)",
            f"subtask(s) {pending} ({self.label}) still not finished after {self.suite.timeout} s "
            f"and {len(self.emitted())} record(s)",
        )

    def snapshot(self, checkpoint_id: int) -> list[list[Any]]:
        snapshots = []
        for i, reader in enumerate(self.readers):
            with self.sc.step(f"snapshot of subtask {i} ({self.label})"):
                snapshots.append(reader.snapshot(checkpoint_id))
        return snapshots

    def notify_complete(self, checkpoint_id: int) -> None:
        for i, reader in enumerate(self.readers):
            with self.sc.step(f"notify_checkpoint_complete of subtask {i} ({self.label})"):
                reader.notify_checkpoint_complete(checkpoint_id)

    def check_order(self) -> None:
        """Within one reader's output, each split's records come in written order."""
        position = self.inp.position
        for i, out in enumerate(self.outputs):
            last: dict[int, tuple[int, Any]] = {}
            for record in out:
                split, index = position[record]
                previous = last.get(split)
                if previous is not None and index <= previous[0]:
                    self.sc.fail(
                        "order within a split",
                        f"subtask {i} ({self.label}) emitted {record!r} after {previous[1]!r}",
                    )
                last[split] = (index, record)
