"""Two-phase commit for batch sinks: the base of every exactly-once sink (Flink's
``TwoPhaseCommitSinkFunction``, batch-oriented).

A ``TwoPhaseCommitSinkWriter`` writes records into a *transaction* of the external system and
ties its commit to checkpoints:

1. ``begin_transaction`` opens a transaction; ``write`` hands every batch to
   ``write_to_transaction``.
2. At a checkpoint (``snapshot_state(n)``) the current transaction is **pre-committed**: made
   durable but not yet visible. It is recorded as pending for checkpoint *n* and a new
   transaction begins for the records after the barrier. The snapshot is the list of all
   pending ``(checkpoint_id, transaction)`` pairs, so the checkpoint itself knows what to
   commit.
3. Once checkpoint *n* is durable (``notify_checkpoint_complete(n)``) every pending
   transaction of a checkpoint ``<= n`` is **committed**, oldest first. An aborted checkpoint
   leaves its transaction pending: the next checkpoint's snapshot still lists it and that
   checkpoint's completion commits it.
4. After a failure the job restarts from the last completed checkpoint. ``open`` commits
   every restored pending transaction (``recover_and_commit``): it was pre-committed for that
   checkpoint — or an earlier one — which is complete, but the notification may never have
   arrived. Then ``abort_lingering`` lets the sink clean up transactions the crashed attempt
   had begun after that checkpoint, which would otherwise stay open in the external system.
5. ``close`` aborts the current, never pre-committed transaction. Pending transactions are
   left alone: they belong to a checkpoint that may already be complete, and the next
   restore commits them.

Guarantee: **exactly-once** with checkpointing on (and a replayable source): every record is
in exactly one transaction, a transaction becomes visible only when the checkpoint covering
its records is complete, and a restore replays exactly the records after that checkpoint into
new transactions. Without checkpointing nothing is ever committed.

``commit`` must be **idempotent**: committing an already committed transaction is a no-op.
A restore may hand back a transaction that was committed before the failure (the failure hit
between the commit and the next checkpoint), and a finished subtask's final snapshot is
restored again on every later restart. Transactions must be picklable once pre-committed:
they are the checkpointed state. On a restore at another parallelism each subtask gets a
round-robin share of all old subtasks' pending transactions, so any subtask must be able to
commit any transaction.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic, TypeVar

from strom.connectors.base.sink import SinkWriter

__all__ = ["TwoPhaseCommitSinkWriter"]

T = TypeVar("T")
TXN = TypeVar("TXN")


class TwoPhaseCommitSinkWriter(SinkWriter[T], Generic[T, TXN]):
    """An exactly-once ``SinkWriter`` built on transactions of the external system.

    Subclasses implement the transaction hooks; this class runs the protocol (see the module
    docstring). Called from a single thread, like every ``SinkWriter``.
    """

    def __init__(self) -> None:
        self._current: TXN | None = None
        # (checkpoint id, pre-committed transaction), oldest first; ids only ever grow.
        self._pending: list[tuple[int, TXN]] = []

    # -- hooks ------------------------------------------------------------------------------
    @abstractmethod
    def begin_transaction(self) -> TXN:
        """Open a new transaction."""

    @abstractmethod
    def write_to_transaction(self, txn: TXN, values: list[T], timestamps: list[int] | None) -> None:
        """Write one batch into ``txn``."""

    @abstractmethod
    def pre_commit(self, txn: TXN) -> None:
        """Make ``txn`` durable but not visible; afterwards it must be picklable and nothing
        more is written to it."""

    @abstractmethod
    def commit(self, txn: TXN) -> None:
        """Make a pre-committed ``txn`` visible. Must be idempotent: committing an already
        committed transaction is a no-op."""

    @abstractmethod
    def abort(self, txn: TXN) -> None:
        """Discard ``txn`` (pre-committed or not); aborting twice is harmless."""

    def recover_and_commit(self, txn: TXN) -> None:
        """Commit a transaction restored from a checkpoint; it may be committed already."""
        self.commit(txn)

    def recover_and_abort(self, txn: TXN) -> None:
        """Abort a transaction restored from a checkpoint (for sinks that must not commit it)."""
        self.abort(txn)

    def abort_lingering(self, restored: list[tuple[int, TXN]] | None) -> None:
        """Clean up transactions that crashed attempts left open in the external system.

        Called in ``open`` after the restored transactions are committed (``restored`` lists
        them; ``None`` on a fresh start) and before the first new transaction begins. The
        default does nothing. Take care: on a restore the other subtasks are recovering their
        share of the pending transactions at the same time, so only abort what can never be
        among them.
        """

    # -- introspection ----------------------------------------------------------------------
    @property
    def current_transaction(self) -> TXN | None:
        """The open transaction records are written to (``None`` before open/after close)."""
        return self._current

    @property
    def pending_transactions(self) -> list[tuple[int, TXN]]:
        """Pre-committed transactions waiting for their checkpoint, oldest first (a copy)."""
        return list(self._pending)

    # -- SinkWriter -------------------------------------------------------------------------
    def open(self, restored_state: list[Any] | None) -> None:
        restored: list[tuple[int, TXN]] | None = None
        if restored_state is not None:
            restored = sorted((_entry(e) for e in restored_state), key=lambda p: p[0])
            for _, txn in restored:
                self.recover_and_commit(txn)
        self.abort_lingering(restored)
        self._current = self.begin_transaction()

    def write(self, values: list[T], timestamps: list[int] | None) -> None:
        txn = self._current
        if txn is None:
            raise RuntimeError(f"{type(self).__name__} used before open() or after close()")
        self.write_to_transaction(txn, values, timestamps)

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        txn = self._current
        if txn is None:
            raise RuntimeError(f"{type(self).__name__} snapshot before open() or after close()")
        self.pre_commit(txn)
        self._pending.append((checkpoint_id, txn))
        # Cleared first so that a failing begin_transaction cannot leave the pre-committed
        # transaction current (close() would abort it although the checkpoint may complete).
        self._current = None
        self._current = self.begin_transaction()
        return [(cid, t) for cid, t in self._pending]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        pending = self._pending
        while pending and pending[0][0] <= checkpoint_id:
            # Dropped only after a successful commit: if it raises, the transaction stays
            # pending, is in the next snapshot, and a restore commits it again (idempotently).
            self.commit(pending[0][1])
            pending.pop(0)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Keep the transaction pending: the next checkpoint's snapshot lists it again and that
        checkpoint's completion commits it (aborting it would lose its records, which the
        source will not replay once a later checkpoint completes)."""

    def close(self) -> None:
        txn, self._current = self._current, None
        if txn is not None:
            self.abort(txn)


def _entry(entry: Any) -> tuple[int, Any]:
    if (
        isinstance(entry, tuple | list)
        and len(entry) == 2
        and isinstance(entry[0], int)
        and not isinstance(entry[0], bool)
    ):
        return entry[0], entry[1]
    raise ValueError(
        "TwoPhaseCommitSinkWriter: restored state entry is not a (checkpoint_id, transaction) "
        f"pair: {type(entry).__name__}"
    )
