"""``SinkConformance``: the conformance battery for batch sinks (``Sink``).

The battery writes numbered records through the sink's writers, in batches of uneven sizes
(empty ones included, some with timestamps) dealt round-robin to the subtasks, and reads the
output back through a user fixture after every step that should have made something visible.

Checks (``SinkConformance.CHECKS``):

- ``write_and_flush``: at parallelism 1 and 3, the end of input (``flush(True)``; for an
  exactly-once sink also the final checkpoint) makes every record visible exactly once, each
  subtask's records in the order written; closing afterwards changes nothing. A transactional
  (two-phase commit) sink shows nothing before that checkpoint completes.
- ``stop_and_restore``: write, checkpoint (notified — or complete but the failure comes before
  the notification), write more, crash (``close`` without flush); writers restored from the
  pickled snapshots get the records after the checkpoint again, then new ones. Exactly-once:
  every record exactly once; at-least-once: every record at least once, and only the replayed
  ones may repeat. What a completed checkpoint covered is visible before and after the crash.
- ``rescale``: the same from parallelism 2 to 1 and to 3 (writer state dealt round-robin).
- ``close_without_flush``: a crash leaves readable output: no torn or foreign records, no
  duplicates, the checkpointed records visible, and for a transactional sink none of the
  uncommitted ones.
- ``declared_guarantee``: ``supported_guarantees`` is declared (and matches
  ``expected_guarantee``); a failure before the first checkpoint completes (a restart without
  state) keeps the guarantee; an exactly-once sink commits an aborted checkpoint's records with
  the next completed checkpoint.

The writers a scenario drives, and the judgment of the output against what they wrote, are in
``conformance_sink_runs.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from strom.connectors.base import DeliveryGuarantee, Sink
from strom.testing.conformance import Battery, CheckNotApplicable, Scenario, sample
from strom.testing.conformance_sink_runs import BATCHES, WriterRun, account, check_order

__all__ = ["SinkConformance"]

EO = DeliveryGuarantee.EXACTLY_ONCE
ALO = DeliveryGuarantee.AT_LEAST_ONCE
AMO = DeliveryGuarantee.AT_MOST_ONCE

_RECORDS = 60


def _default_record(i: int) -> Any:
    return f"record-{i:04d}"


class SinkConformance(Battery):
    """The conformance battery for a ``Sink``; see the module docstring for the checks.

    ::

        def make_sink():                    # a fresh output for every scenario
            return TextSink(Path(tempfile.mkdtemp()) / "out")

        def read_back(sink):                # what is visible in the output now
            ...                             # the lines of sink.path (a file, or a directory)

        SinkConformance(make_sink, read_back).check_all()

    Args:
        make_sink: builds the sink under test with a fresh, empty output; called once per
            scenario (restored writers of the scenario come from the same sink).
        read_back: the records visible in the sink's output right now, as written (strip
            prefixes, parse lines); each subtask's records in their order when ``ordered``.
            Called many times per scenario; it must not consume the output.
        expected_guarantee: the guarantee the sink must declare; ``None`` accepts its
            declaration (which is still checked against its behaviour).
        make_record: the *i*-th record to write (hashable); ``"record-0007"`` by default.
        ordered: whether ``read_back`` keeps each subtask's records in write order.
        transactional: whether uncommitted records must stay invisible; by default, whether
            the writers are ``TwoPhaseCommitSinkWriter``\\ s.
        cleanup: called with the sink when a scenario is over.
        settle: seconds to wait before a final read of the output, for sinks whose output
            arrives asynchronously (a server receiving): late duplicates show up within it.
        timeout: seconds to wait for records that must become visible.
    """

    CHECKS: ClassVar[tuple[str, ...]] = (
        "write_and_flush",
        "stop_and_restore",
        "rescale",
        "close_without_flush",
        "declared_guarantee",
    )

    def __init__(
        self,
        make_sink: Callable[[], Sink[Any]],
        read_back: Callable[[Sink[Any]], Sequence[Any]],
        *,
        expected_guarantee: DeliveryGuarantee | str | None = None,
        make_record: Callable[[int], Any] | None = None,
        ordered: bool = True,
        transactional: bool | None = None,
        cleanup: Callable[[Sink[Any]], None] | None = None,
        settle: float = 0.0,
        timeout: float = 5.0,
    ) -> None:
        self.make_sink = make_sink
        self.read_back = read_back
        self.expected_guarantee = (
            None if expected_guarantee is None else DeliveryGuarantee.parse(expected_guarantee)
        )
        self.make_record = make_record or _default_record
        self.ordered = ordered
        self.transactional = transactional
        self.cleanup = cleanup
        self.settle = settle
        self.timeout = timeout
        self._probed: Sink[Any] | None = None

    # -- the checks ---------------------------------------------------------------------------
    def check_write_and_flush(self) -> None:
        """Batches across subtasks; the end of input makes everything visible, once, in order."""
        records = self._records(_RECORDS)
        for p in self._parallelisms(1, 3):
            story = (
                f"{len(records)} records in batches of sizes {list(BATCHES)} dealt round-robin "
                f"to {p} subtask(s), then the end of input"
            )
            with self._output("write_and_flush", story) as (sink, sc):
                guarantee = sink.delivery_guarantee
                writers = WriterRun(sink, sc, p, None)
                try:
                    writers.write(records)
                    writers.end_input()
                    if guarantee is EO:
                        sc.data += " and the final checkpoint 1"
                        writers.snapshot(1)
                        if self._transactional(writers):
                            self._expect_invisible(sc, sink, records, "before checkpoint 1")
                        writers.notify(1)
                    out = self._read(sc, sink, want=records)
                    self._account(sc, out, records, EO, "everything visible once at the end")
                    self._check_order(sc, out, writers.written)
                finally:
                    writers.close()
                out = self._read(sc, sink, want=records)
                self._account(sc, out, records, EO, "close after the end of input changes nothing")

    def check_stop_and_restore(self) -> None:
        """Checkpoint, write more, crash; restored writers get the replay and go on."""
        for p in self._parallelisms(1, 2):
            for notified in (True, False):
                self._failover("stop_and_restore", p, p, notified)

    def check_rescale(self) -> None:
        """Writer state of parallelism 2 restored at 1 and at 3."""
        limit = self._probe().max_parallelism
        if limit is not None and limit < 2:
            raise CheckNotApplicable(f"the sink is not parallel (max_parallelism={limit})")
        for target in self._parallelisms(1, 3):
            self._failover("rescale", 2, target, True)

    def check_close_without_flush(self) -> None:
        """A crash after a checkpoint leaves readable, duplicate-free output."""
        records = self._records(50)
        covered, rest = records[:30], records[30:]
        [p] = self._parallelisms(2)
        story = (
            f"parallelism {p}: write {len(covered)} records, checkpoint 1 (notified), write "
            f"{len(rest)} more, close without flush"
        )
        with self._output("close_without_flush", story) as (sink, sc):
            guarantee = sink.delivery_guarantee
            writers = WriterRun(sink, sc, p, None)
            try:
                writers.write(covered)
                writers.snapshot(1)
                writers.notify(1)
                writers.write(rest)
                transactional = self._transactional(writers)
            finally:
                writers.close()
            out = self._read(sc, sink, want=covered if guarantee in (EO, ALO) else None)
            self._account(sc, out, records, AMO, "no duplicates without a restore")
            if guarantee in (EO, ALO):
                self._account(sc, out, covered, ALO, "checkpointed records stay visible")
            if transactional:
                self._expect_invisible(sc, sink, rest, "never committed", out)

    def check_declared_guarantee(self) -> None:
        """The declaration is there (and as expected), and holds in the harder failures."""
        sink = self._probe()
        declared = sink.supported_guarantees
        sc = Scenario(sink.describe(), "declared_guarantee", "the sink's declaration")
        if not declared:
            sc.fail("a declared guarantee", "supported_guarantees is empty")
        actual = sink.delivery_guarantee
        expected = self.expected_guarantee
        if expected is not None and actual is not expected:
            sc.fail(
                "the expected guarantee",
                f"the sink declares {actual.value} "
                f"(supported: {sorted(g.value for g in declared)}), expected {expected.value}",
            )
        if actual in (EO, ALO):
            self._restart_without_checkpoint()
        if actual is EO:
            self._aborted_checkpoint()

    # -- scenarios ----------------------------------------------------------------------------
    def _failover(self, check: str, p0: int, p1: int, notified: bool) -> None:
        records = self._records(_RECORDS)
        covered, replayed, new = records[:25], records[25:40], records[40:]
        story = (
            f"parallelism {p0}: write {len(covered)} records, checkpoint 1 "
            + (
                "(notified)"
                if notified
                else "(complete, but the failure comes before its notification)"
            )
            + f", write {len(replayed)} more, crash (close without flush); restore at parallelism "
            f"{p1}, replay those {len(replayed)}, write {len(new)} more, end of input, "
            "checkpoint 2 (notified)"
        )
        with self._output(check, story) as (sink, sc):
            guarantee = sink.delivery_guarantee
            durable = guarantee in (EO, ALO)
            first = WriterRun(sink, sc, p0, None)
            try:
                first.write(covered)
                snapshots = first.snapshot(1)
                if notified:
                    first.notify(1)
                    if durable:
                        self._expect_visible(sc, sink, covered, "after checkpoint 1 completed")
                first.write(replayed)
            finally:
                first.close()
            second = WriterRun(sink, sc, p1, snapshots, attempt=1)
            try:
                if durable:
                    self._expect_visible(sc, sink, covered, "after the restore from checkpoint 1")
                second.write(replayed + new)
                second.end_input()
                second.snapshot(2)
                second.notify(2)
                if durable:
                    self._expect_visible(sc, sink, records, "after the end and checkpoint 2")
            finally:
                second.close()
            out = self._read(sc, sink, want=records if durable else None)
            self._account(
                sc, out, records, guarantee, f"{guarantee.value} across a restore", replayed
            )

    def _restart_without_checkpoint(self) -> None:
        records = self._records(_RECORDS)
        first_run = records[:35]
        [p] = self._parallelisms(2)
        story = (
            f"parallelism {p}: write {len(first_run)} records, checkpoint 1 taken but never "
            "completed, crash; the job restarts without state (attempt 1) and writes all "
            f"{len(records)}, end of input, checkpoint 2 (notified)"
        )
        with self._output("declared_guarantee", story) as (sink, sc):
            guarantee = sink.delivery_guarantee
            first = WriterRun(sink, sc, p, None)
            try:
                first.write(first_run[:20])
                first.snapshot(1)
                first.write(first_run[20:])
            finally:
                first.close()
            second = WriterRun(sink, sc, p, None, attempt=1)
            try:
                second.write(records)
                second.end_input()
                second.snapshot(2)
                second.notify(2)
            finally:
                second.close()
            out = self._read(sc, sink, want=records)
            self._account(
                sc, out, records, guarantee, f"{guarantee.value} across a restart", first_run
            )

    def _aborted_checkpoint(self) -> None:
        records = self._records(45)
        a, b, c = records[:15], records[15:30], records[30:]
        story = (
            "parallelism 1: write 15 records, checkpoint 1 aborted, write 15 more, checkpoint 2 "
            "(notified), write 15 more, end of input, checkpoint 3 (notified)"
        )
        with self._output("declared_guarantee", story) as (sink, sc):
            writers = WriterRun(sink, sc, 1, None)
            try:
                writers.write(a)
                writers.snapshot(1)
                writers.notify(1, aborted=True)
                writers.write(b)
                writers.snapshot(2)
                writers.notify(2)
                out = self._read(sc, sink, want=a + b)
                self._account(sc, out, a + b, EO, "an aborted checkpoint's records commit later")
                writers.write(c)
                writers.end_input()
                writers.snapshot(3)
                writers.notify(3)
            finally:
                writers.close()
            out = self._read(sc, sink, want=records)
            self._account(sc, out, records, EO, "exactly-once around an aborted checkpoint")

    # -- helpers ------------------------------------------------------------------------------
    @contextmanager
    def _output(self, check: str, story: str) -> Iterator[tuple[Sink[Any], Scenario]]:
        sink = self.make_sink()
        try:
            yield sink, Scenario(sink.describe(), check, story)
        finally:
            if self.cleanup is not None:
                self.cleanup(sink)

    def _records(self, n: int) -> list[Any]:
        return [self.make_record(i) for i in range(n)]

    def _probe(self) -> Sink[Any]:
        if self._probed is None:
            with self._output("declared_guarantee", "declarations only") as (sink, _):
                self._probed = sink
        return self._probed

    def _parallelisms(self, *wanted: int) -> list[int]:
        limit = self._probe().max_parallelism
        return sorted({p if limit is None else min(p, limit) for p in wanted})

    def _transactional(self, writers: WriterRun) -> bool:
        return writers.transactional if self.transactional is None else self.transactional

    def _read(self, sc: Scenario, sink: Sink[Any], want: Sequence[Any] | None) -> list[Any]:
        """The output now; with ``want``, waiting up to ``timeout`` for all of it to show."""
        deadline = time.monotonic() + self.timeout
        while True:
            with sc.step("read_back of the output"):
                out = list(self.read_back(sink))
            if want is None or set(want) <= set(out) or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if self.settle:
            time.sleep(self.settle)
            with sc.step("read_back of the output"):
                out = list(self.read_back(sink))
        return out

    def _expect_visible(self, sc: Scenario, sink: Sink[Any], records: list[Any], when: str) -> None:
        out = set(self._read(sc, sink, want=records))
        missing = [r for r in records if r not in out]
        if missing:
            sc.fail(
                f"records covered by a completed checkpoint are visible {when}",
                f"{len(missing)} of {len(records)} missing: {sample(missing)}",
            )

    def _expect_invisible(
        self,
        sc: Scenario,
        sink: Sink[Any],
        records: list[Any],
        when: str,
        out: list[Any] | None = None,
    ) -> None:
        seen = set(self._read(sc, sink, want=None) if out is None else out)
        shown = [r for r in records if r in seen]
        if shown:
            sc.fail(
                "uncommitted records stay invisible (two-phase commit)",
                f"{len(shown)} record(s) visible {when}: {sample(shown)}",
            )

    def _account(
        self,
        sc: Scenario,
        out: list[Any],
        written: list[Any],
        guarantee: DeliveryGuarantee,
        prop: str,
        may_repeat: Sequence[Any] = (),
    ) -> None:
        """``account`` for ``out``; any of the records a scenario may write counts as known."""
        account(sc, out, written, guarantee, prop, self._records(_RECORDS), may_repeat)

    def _check_order(self, sc: Scenario, out: list[Any], written: list[list[Any]]) -> None:
        if self.ordered:
            check_order(sc, out, written)
