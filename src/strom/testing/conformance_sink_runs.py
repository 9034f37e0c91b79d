"""The writing side of ``SinkConformance``, and how it judges what the output shows.

``WriterRun`` is one attempt of a job's sink at one parallelism: a ``SinkWriterHarness`` per
subtask, fed uneven batches dealt round-robin (``BATCHES``), with what each subtask wrote kept
for the checks. ``account`` and ``check_order`` judge the output read back against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from strom.connectors.base import DeliveryGuarantee, Sink, TwoPhaseCommitSinkWriter
from strom.testing.conformance import Scenario, sample
from strom.testing.harness import SinkWriterHarness

__all__ = ["BATCHES", "WriterRun", "account", "check_order"]

EO = DeliveryGuarantee.EXACTLY_ONCE
ALO = DeliveryGuarantee.AT_LEAST_ONCE

# Batch sizes, dealt round-robin to the subtasks: uneven, with an empty batch among them.
BATCHES = (1, 5, 0, 8, 3, 13, 2)


class WriterRun:
    """One set of writers: one attempt of a job's sink at one parallelism."""

    def __init__(
        self,
        sink: Sink[Any],
        sc: Scenario,
        parallelism: int,
        restored: list[list[Any]] | None,
        attempt: int = 0,
    ) -> None:
        self.sc = sc
        self.label = f"attempt {attempt} at parallelism {parallelism}"
        self.harnesses: list[SinkWriterHarness[Any]] = []
        self.written: list[list[Any]] = [[] for _ in range(parallelism)]
        self._batch = 0
        try:
            for i in range(parallelism):
                with sc.step(f"opening subtask {i} ({self.label})"):
                    self.harnesses.append(
                        SinkWriterHarness(
                            sink, i, parallelism, restored_state=restored, attempt=attempt
                        )
                    )
        except BaseException:
            self.close()
            raise

    @property
    def transactional(self) -> bool:
        return any(isinstance(h.writer, TwoPhaseCommitSinkWriter) for h in self.harnesses)

    def write(self, records: Sequence[Any]) -> None:
        p = len(self.harnesses)
        start = 0
        while start < len(records):
            size = BATCHES[self._batch % len(BATCHES)]
            i = self._batch % p
            batch = list(records[start : start + size])
            # every other batch carries event-time timestamps, as after assign_timestamps
            stamps = [1_000 + start + k for k in range(len(batch))] if self._batch % 2 else None
            with self.sc.step(f"write of {len(batch)} record(s) by subtask {i} ({self.label})"):
                self.harnesses[i].write(batch, stamps)
            self.written[i].extend(batch)
            self._batch += 1
            start += size

    def end_input(self) -> None:
        for i, h in enumerate(self.harnesses):
            with self.sc.step(f"end of input (flush(True)) of subtask {i} ({self.label})"):
                h.end_input()

    def snapshot(self, checkpoint_id: int) -> list[list[Any]]:
        snapshots = []
        for i, h in enumerate(self.harnesses):
            with self.sc.step(f"checkpoint {checkpoint_id} of subtask {i} ({self.label})"):
                snapshots.append(h.snapshot(checkpoint_id))
        return self.sc.roundtrip(snapshots)

    def notify(self, checkpoint_id: int, *, aborted: bool = False) -> None:
        what = "aborted" if aborted else "complete"
        for i, h in enumerate(self.harnesses):
            with self.sc.step(f"notify_checkpoint_{what}({checkpoint_id}) of subtask {i}"):
                if aborted:
                    h.notify_checkpoint_aborted(checkpoint_id)
                else:
                    h.notify_checkpoint_complete(checkpoint_id)

    def close(self) -> None:
        """``close`` without a flush: what the runtime does after a failure."""
        harnesses, self.harnesses = self.harnesses, []
        for i, h in enumerate(harnesses):
            with self.sc.step(f"close of subtask {i} ({self.label})"):
                h.close()


def account(
    sc: Scenario,
    out: list[Any],
    written: list[Any],
    guarantee: DeliveryGuarantee,
    prop: str,
    known: Sequence[Any],
    may_repeat: Sequence[Any] = (),
) -> None:
    """Judge ``out`` against ``written``: no foreign records (neither written nor ``known``);
    no loss for exactly-once and at-least-once; no duplicates for exactly-once and
    at-most-once; for at-least-once, duplicates only among ``may_repeat`` (the records
    replayed after a failure)."""
    counts = Counter(out)
    universe = set(known) | set(written)
    foreign = [r for r in counts if r not in universe]
    if foreign:
        sc.fail("only written records in the output (none torn or corrupt)", sample(foreign))
    missing = [r for r in written if counts[r] == 0]
    if missing and guarantee in (EO, ALO):
        sc.fail(
            f"no loss ({prop})",
            f"{len(missing)} of {len(written)} records not in the output: {sample(missing)}",
        )
    duplicated = [r for r in written if counts[r] > 1]
    if guarantee is ALO:
        allowed = set(may_repeat)
        duplicated = [r for r in duplicated if r not in allowed]
    if duplicated and guarantee is not DeliveryGuarantee.NONE:
        sc.fail(
            f"no duplicates ({prop})"
            if guarantee is not ALO
            else f"duplicates only of records replayed after the checkpoint ({prop})",
            f"{len(duplicated)} record(s) in the output more than once: "
            + sample([f"{r!r} x{counts[r]}" for r in duplicated]),
        )


def check_order(sc: Scenario, out: list[Any], written: list[list[Any]]) -> None:
    """Each subtask's records (``written[i]``) are in ``out`` in the order they were written."""
    position: dict[Any, int] = {}
    for index, record in enumerate(out):
        position.setdefault(record, index)
    for i, records in enumerate(written):
        for earlier, later in pairwise(records):
            if position[earlier] > position[later]:
                sc.fail(
                    "each subtask's records in write order",
                    f"subtask {i} wrote {earlier!r} before {later!r}, the output has them "
                    "the other way round",
                )
