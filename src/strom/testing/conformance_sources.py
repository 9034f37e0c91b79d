"""``SourceConformance``: the conformance battery for pull-based sources (``Source``).

The battery writes its own input — records ``"s<split>-r<index>"`` in a number of *splits*
(files, partitions, ...) — through a user fixture, reads it back through the connector, and
checks what came out. Every record is unique and names its split and position, so a failure
can say which record was lost, duplicated or reordered.

Checks (``SourceConformance.CHECKS``):

- ``single_split``: one split is read completely and in order.
- ``many_splits``: several splits (one of them empty) at parallelism 1 and 3: every record
  exactly once across the subtasks, the order within each split kept by each subtask.
- ``stop_and_restore``: readers poll *k* records, snapshot, poll on and crash; new readers
  restored from the (pickled) snapshots read the rest. Exactly-once: no loss and no
  duplicate; at-least-once: no loss. *k* is 0, 1, 7 and "everything".
- ``rescale``: snapshot at parallelism 2, restore at 1 and at 3; and 2 -> 3 -> 1, where the
  state restored at 3 must still carry what the subtasks at 2 had emitted.
- ``end_of_input``: a bounded source returns ``None`` when done and keeps returning it, also
  for empty input and after a restore from its final snapshot; an unbounded one returns
  ``[]`` while idle (and ``None`` once the ``end_input`` fixture ends its input, if given).
- ``declared_guarantee``: ``supported_guarantees`` is declared (and matches
  ``expected_guarantee``); a replayable guarantee survives two failures in a row.

Restore checks apply to sources that declare exactly-once or at-least-once: an at-most-once
source (a socket) has nothing to replay. The readers a scenario polls, and the input they read,
are in ``conformance_source_runs.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar, cast

from strom.connectors.base import DeliveryGuarantee, Source
from strom.testing.conformance import Battery, CheckNotApplicable, Scenario, sample
from strom.testing.conformance_source_runs import ReaderRun, SourceInput, make_splits

__all__ = ["SourceConformance", "make_splits"]

D = TypeVar("D")

EO = DeliveryGuarantee.EXACTLY_ONCE
ALO = DeliveryGuarantee.AT_LEAST_ONCE
AMO = DeliveryGuarantee.AT_MOST_ONCE

_SINGLE = (50,)
_MANY = (17, 0, 33, 5, 24, 1)
# Small batches while reading up to a snapshot, so that snapshots land in the middle of splits.
_BEFORE_BATCH = 3


class SourceConformance(Battery, Generic[D]):
    """The conformance battery for a ``Source``; see the module docstring for the checks.

    ::

        def write_files(splits):            # one file per split, in a fresh directory
            root = Path(tempfile.mkdtemp())
            for i, lines in enumerate(splits):
                (root / f"part-{i}.txt").write_text("".join(f"{x}\\n" for x in lines))
            return root

        SourceConformance(lambda root: FileSource(root), write_files).check_all()

    Args:
        make_source: builds the source under test for one scenario's input (the handle
            ``write_data`` returned; the splits themselves when there is no ``write_data``).
        write_data: creates *fresh* input with the given splits (lists of records, in order)
            and returns a handle for ``make_source``; called once per scenario.
        expected_guarantee: the guarantee the source must declare; ``None`` accepts its
            declaration (which is still checked against its behaviour).
        max_splits: the most splits the input can have (1 for a stream with no splits, or a
            source that reads one sequence); ``None``: any number.
        after_open: called with the handle each time a set of readers has opened (for systems
            that deliver only to connected clients, e.g. a server that sends lines).
        end_input: ends the input of an unbounded source that can finish (a server closing
            the connection); enables the "returns None after the end" part of ``end_of_input``.
        cleanup: called with the handle when a scenario is over (stop a server).
        decode: turns each emitted record into the written string (default: as is).
        settle: seconds an unbounded source must stay quiet after the expected records before
            its output counts as complete (late duplicates show up within it).
        timeout: seconds a scenario's reads may take.
        poll_limit: seconds one ``poll`` may take (the contract allows ``max_poll_wait``).
    """

    CHECKS: ClassVar[tuple[str, ...]] = (
        "single_split",
        "many_splits",
        "stop_and_restore",
        "rescale",
        "end_of_input",
        "declared_guarantee",
    )

    def __init__(
        self,
        make_source: Callable[[D], Source[Any]],
        write_data: Callable[[list[list[str]]], D] | None = None,
        *,
        expected_guarantee: DeliveryGuarantee | str | None = None,
        max_splits: int | None = None,
        after_open: Callable[[D], None] | None = None,
        end_input: Callable[[D], None] | None = None,
        cleanup: Callable[[D], None] | None = None,
        decode: Callable[[Any], Any] | None = None,
        settle: float = 0.2,
        timeout: float = 10.0,
        poll_limit: float = 1.0,
    ) -> None:
        if max_splits is not None and max_splits < 1:
            raise ValueError(f"max_splits must be >= 1 or None, got {max_splits!r}")
        self.make_source = make_source
        self.write_data = write_data
        self.expected_guarantee = (
            None if expected_guarantee is None else DeliveryGuarantee.parse(expected_guarantee)
        )
        self.max_splits = max_splits
        self.after_open = after_open
        self.end_input = end_input
        self.cleanup = cleanup
        self.decode: Callable[[Any], Any] = decode or (lambda value: value)
        self.settle = settle
        self.timeout = timeout
        self.poll_limit = poll_limit
        self._probed: Source[Any] | None = None

    # -- the checks ---------------------------------------------------------------------------
    def check_single_split(self) -> None:
        """One split is read completely, exactly once and in order."""
        with self._input("single_split", _SINGLE, "parallelism 1, no failure") as inp:
            run = ReaderRun(self, inp, 1, None)
            try:
                run.read_to_end()
            finally:
                run.close()
            self._account(inp, run.emitted(), EO, "every record exactly once without failures")
            run.check_order()

    def check_many_splits(self) -> None:
        """Many splits, at parallelism 1 and 3: each record exactly once across subtasks."""
        if self.max_splits == 1:
            raise CheckNotApplicable("the input has a single split (max_splits=1)")
        for p in self._parallelisms(1, 3):
            with self._input("many_splits", _MANY, f"parallelism {p}, no failure") as inp:
                run = ReaderRun(self, inp, p, None)
                try:
                    run.read_to_end()
                finally:
                    run.close()
                self._account(
                    inp, run.emitted(), EO, "every record exactly once across the subtasks"
                )
                run.check_order()

    def check_stop_and_restore(self) -> None:
        """Poll k records, snapshot, crash; restored readers read the rest."""
        self._require_replayable()
        for p in self._parallelisms(1, 2):
            for cut in (0, 1, 7, None):
                self._failover("stop_and_restore", [p, p], cut)

    def check_rescale(self) -> None:
        """Snapshot at parallelism 2, restore at 1 and at 3."""
        self._require_replayable()
        limit = self._probe().max_parallelism
        if limit is not None and limit < 2:
            raise CheckNotApplicable(f"the source is not parallel (max_parallelism={limit})")
        for target in self._parallelisms(1, 3):
            for cut in (1, 5):
                self._failover("rescale", [2, target], cut)
        # Rescaled twice before the input is read: state restored at another parallelism must
        # still describe what the subtasks before the first restore emitted.
        [wider] = self._parallelisms(3)
        self._failover("rescale", [2, wider, 1], 4)

    def check_end_of_input(self) -> None:
        """Bounded: None when done, and None again; unbounded: [] while idle."""
        for sizes, what in ((_SINGLE, "one split"), ((0,), "empty input")):
            with self._input("end_of_input", sizes, f"{what}, parallelism 1") as inp:
                if inp.source.bounded:
                    self._end_bounded(inp)
                else:
                    self._end_unbounded(inp)

    def check_declared_guarantee(self) -> None:
        """The declaration is there (and as expected); replayable ones survive two failures."""
        source = self._probe()
        declared = source.supported_guarantees
        sc = Scenario(source.describe(), "declared_guarantee", "the source's declaration")
        if not declared:
            sc.fail("a declared guarantee", "supported_guarantees is empty")
        actual = source.delivery_guarantee
        if actual not in declared and actual is not AMO:
            sc.fail(
                "a consistent declaration",
                f"delivery_guarantee is {actual.value} but supported_guarantees is "
                f"{sorted(g.value for g in declared)}",
            )
        expected = self.expected_guarantee
        if expected is not None and actual is not expected:
            sc.fail(
                "the expected guarantee",
                f"the source declares {actual.value} "
                f"(supported: {sorted(g.value for g in declared)}), expected {expected.value}",
            )
        if actual in (EO, ALO):
            # Two failures in a row: the state a restored reader snapshots must still describe
            # what the readers before the first failure emitted.
            [p] = self._parallelisms(2)
            self._failover("declared_guarantee", [p, p, p], 4)

    # -- scenarios ----------------------------------------------------------------------------
    def _failover(self, check: str, parallelisms: list[int], cut: int | None) -> None:
        """Read at ``parallelisms[0]`` up to ``cut`` records per subtask (None: all), take
        checkpoint 1, poll once more and crash; restore at the next parallelism, and so on;
        the last set of readers reads to the end. Account for everything emitted before each
        checkpoint plus what the last readers emitted."""
        sizes = _SINGLE if self.max_splits == 1 else _MANY[: self.max_splits]
        steps = " -> ".join(f"parallelism {p}" for p in parallelisms)
        at = "the end" if cut is None else f"{cut} record(s) per subtask"
        story = (
            f"{steps}; before each restore the readers poll up to {at}, snapshot (checkpoint "
            "complete and notified), poll once more and crash"
        )
        with self._input(check, sizes, story) as inp:
            guarantee = inp.source.delivery_guarantee
            restored: list[list[Any]] | None = None
            before: list[str] = []
            runs: list[ReaderRun[D]] = []
            for stage, p in enumerate(parallelisms):
                last = stage == len(parallelisms) - 1
                run = ReaderRun(
                    self, inp, p, restored, attempt=stage, batch=1024 if last else _BEFORE_BATCH
                )
                runs.append(run)
                try:
                    if last:
                        run.read_to_end(set(before))
                        break
                    if cut is None:
                        run.read_to_end(set(before))
                    else:
                        run.read_some(cut)
                    checkpoint = stage + 1
                    snapshots = run.snapshot(checkpoint)
                    before += run.emitted()
                    run.notify_complete(checkpoint)
                    run.poll_once()  # emitted after the checkpoint: lost by the crash
                finally:
                    run.close()
                restored = inp.scenario.roundtrip(snapshots)
            final = runs[-1]
            self._account(
                inp, before + final.emitted(), guarantee, f"{guarantee.value} across restores"
            )
            for run in runs:
                run.check_order()

    def _end_bounded(self, inp: SourceInput[D]) -> None:
        sc = inp.scenario
        run = ReaderRun(self, inp, 1, None)
        try:
            run.read_to_end()
            reader = run.readers[0]
            for _ in range(3):
                with sc.step("poll after the end"):
                    again = reader.reader.poll(reader.max_records)
                if again is not None:
                    sc.fail("a finished reader stays finished", f"poll returned {again!r}")
            snapshots = run.snapshot(1)
        finally:
            run.close()
        self._account(inp, run.emitted(), EO, "every record exactly once without failures")
        if inp.source.delivery_guarantee not in (EO, ALO):
            return
        # A finished subtask's final snapshot is restored again on every later restart.
        again_run = ReaderRun(self, inp, 1, sc.roundtrip([snapshots[0]]), attempt=1)
        try:
            again_run.read_to_end(set(inp.records))
        finally:
            again_run.close()
        if again_run.emitted():
            sc.fail(
                "nothing after a restore from the final snapshot",
                f"the restored reader emitted {sample(again_run.emitted())}",
            )

    def _end_unbounded(self, inp: SourceInput[D]) -> None:
        sc = inp.scenario
        run = ReaderRun(self, inp, 1, None)
        try:
            run.read_to_end()
            deadline = time.monotonic() + self.settle
            while time.monotonic() < deadline:
                batch = run.poll(0)
                if batch is None:
                    sc.fail(
                        "an unbounded source returns [] when idle",
                        "poll returned None although the input was not ended",
                    )
                if batch:
                    break  # an extra record: the accounting below names it
            if self.end_input is not None:
                self.end_input(inp.handle)
                run.read_to_end(finish=True)
                if not run.readers[0].finished:
                    sc.fail(
                        "poll returns None once the input ended",
                        f"still not finished {self.timeout} s after end_input",
                    )
                reader = run.readers[0]
                with sc.step("poll after the end"):
                    again = reader.reader.poll(reader.max_records)
                if again is not None:
                    sc.fail("a finished reader stays finished", f"poll returned {again!r}")
        finally:
            run.close()
        self._account(inp, run.emitted(), EO, "every record exactly once without failures")

    # -- helpers ------------------------------------------------------------------------------
    @contextmanager
    def _input(self, check: str, sizes: Sequence[int], story: str) -> Iterator[SourceInput[D]]:
        splits = make_splits(sizes)
        handle = self.write_data(splits) if self.write_data else cast(D, splits)
        try:
            source = self.make_source(handle)
            data = f"input {len(sizes)} split(s) of sizes {list(sizes)}; {story}"
            yield SourceInput(splits, handle, source, Scenario(source.describe(), check, data))
        finally:
            if self.cleanup is not None:
                self.cleanup(handle)

    def _probe(self) -> Source[Any]:
        """A source instance to read declarations from (built once, on an empty input)."""
        if self._probed is None:
            with self._input("declared_guarantee", (0,), "declarations only") as inp:
                self._probed = inp.source
        return self._probed

    def _parallelisms(self, *wanted: int) -> list[int]:
        limit = self._probe().max_parallelism
        return sorted({p if limit is None else min(p, limit) for p in wanted})

    def _require_replayable(self) -> None:
        guarantee = self._probe().delivery_guarantee
        if guarantee not in (EO, ALO):
            raise CheckNotApplicable(
                f"the source declares {guarantee.value}: it does not replay after a restore"
            )

    def _account(
        self, inp: SourceInput[D], emitted: list[Any], guarantee: DeliveryGuarantee, prop: str
    ) -> None:
        sc = inp.scenario
        counts = Counter(emitted)
        unknown = [r for r in counts if r not in inp.position]
        if unknown:
            sc.fail("only written records are emitted", f"never written: {sample(unknown)}")
        missing = [r for r in inp.records if counts[r] == 0]
        if missing and guarantee in (EO, ALO):
            sc.fail(
                f"no loss ({prop})",
                f"{len(missing)} of {len(inp.records)} records never emitted: {sample(missing)}",
            )
        duplicated = sorted(r for r, n in counts.items() if n > 1)
        if duplicated and guarantee in (EO, AMO):
            sc.fail(
                f"no duplicates ({prop})",
                f"{len(duplicated)} record(s) emitted more than once: "
                + sample([f"{r} x{counts[r]}" for r in duplicated]),
            )
