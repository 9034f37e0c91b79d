"""The two-phase commit protocol of ``TwoPhaseCommitSinkWriter`` against an in-memory
transactional store."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from strom.connectors.base import SinkWriter, TwoPhaseCommitSinkWriter


@dataclass
class Store:
    """A transactional key-value log: records become visible only when their txn commits."""

    visible: list[Any] = field(default_factory=list)
    prepared: dict[str, list[Any]] = field(default_factory=dict)  # durable, invisible
    open_txns: dict[str, list[Any]] = field(default_factory=dict)
    committed: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    next_id: int = 0


class Writer(TwoPhaseCommitSinkWriter[Any, str]):
    """Transactions are ids into the store; the store outlives writers (it is 'external')."""

    def __init__(self, store: Store, name: str = "w") -> None:
        super().__init__()
        self.store = store
        self.name = name
        self.lingering_calls: list[Any] = []

    def begin_transaction(self) -> str:
        self.store.next_id += 1
        txn = f"{self.name}-{self.store.next_id}"
        self.store.open_txns[txn] = []
        return txn

    def write_to_transaction(
        self, txn: str, values: list[Any], timestamps: list[int] | None
    ) -> None:
        self.store.open_txns[txn].extend(values)

    def pre_commit(self, txn: str) -> None:
        self.store.prepared[txn] = self.store.open_txns.pop(txn)

    def commit(self, txn: str) -> None:
        if txn in self.store.committed:
            return  # idempotent
        self.store.visible.extend(self.store.prepared.pop(txn))
        self.store.committed.append(txn)

    def abort(self, txn: str) -> None:
        self.store.open_txns.pop(txn, None)
        self.store.prepared.pop(txn, None)
        self.store.aborted.append(txn)

    def abort_lingering(self, restored: list[tuple[int, str]] | None) -> None:
        self.lingering_calls.append(restored)
        if restored is None:
            return
        # everything of this writer's name still open or prepared, not restored, is lingering
        keep = {t for _, t in restored}
        for txn in [*self.store.open_txns, *self.store.prepared]:
            if txn.startswith(self.name) and txn not in keep and txn not in self.store.committed:
                self.abort(txn)


def opened(store: Store, restored: list[Any] | None = None, name: str = "w") -> Writer:
    w = Writer(store, name)
    w.open(restored)
    return w


def test_is_a_sink_writer_and_starts_a_transaction_on_open() -> None:
    store = Store()
    w = opened(store)
    assert isinstance(w, SinkWriter)
    assert w.current_transaction == "w-1"
    assert w.pending_transactions == []
    assert w.lingering_calls == [None]  # a fresh start is told so


def test_snapshot_pre_commits_and_completion_commits() -> None:
    store = Store()
    w = opened(store)
    w.write([1, 2], None)
    state = w.snapshot_state(1)
    assert state == [(1, "w-1")]
    assert store.prepared == {"w-1": [1, 2]}  # durable but not visible
    assert store.visible == []
    assert w.current_transaction == "w-2"  # records after the barrier go to a new txn
    w.write([3], None)
    w.notify_checkpoint_complete(1)
    assert store.visible == [1, 2]
    assert w.pending_transactions == []
    w.snapshot_state(2)
    w.notify_checkpoint_complete(2)
    assert store.visible == [1, 2, 3]
    pickle.dumps(state)  # the snapshot is serializable


def test_nothing_is_visible_without_a_completed_checkpoint() -> None:
    store = Store()
    w = opened(store)
    w.write([1], None)
    w.flush(False)
    w.snapshot_state(1)
    w.flush(True)
    assert store.visible == []


def test_aborted_checkpoint_keeps_txn_pending_until_a_later_completion() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    w.snapshot_state(1)
    w.notify_checkpoint_aborted(1)
    assert store.visible == []
    assert w.pending_transactions == [(1, "w-1")]
    w.write(["b"], None)
    state = w.snapshot_state(2)
    assert state == [(1, "w-1"), (2, "w-2")]  # the later checkpoint carries both
    w.notify_checkpoint_complete(2)
    assert store.visible == ["a", "b"]  # committed in checkpoint order
    assert store.committed == ["w-1", "w-2"]


def test_completion_commits_only_up_to_its_checkpoint() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    w.snapshot_state(1)
    w.write(["b"], None)
    w.snapshot_state(2)
    w.notify_checkpoint_complete(1)  # a late notification for the older checkpoint
    assert store.visible == ["a"]
    assert w.pending_transactions == [(2, "w-2")]


def test_restore_commits_pending_and_aborts_lingering() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    state = w.snapshot_state(1)  # checkpoint 1 completes, but the notification never arrives
    w.write(["b"], None)
    w.snapshot_state(2)  # pre-committed, but checkpoint 2 never completes
    w.write(["c"], None)  # in the open txn when the process dies (no close)
    assert store.visible == []

    restored = opened(store, pickle.loads(pickle.dumps(state)))
    assert store.visible == ["a"]  # pending txn of the restored checkpoint is committed
    assert restored.lingering_calls == [[(1, "w-1")]]
    assert set(store.aborted) == {"w-2", "w-3"}  # the crashed attempt's txns
    assert store.prepared == {}
    assert list(store.open_txns) == [restored.current_transaction]
    restored.write(["b", "c"], None)  # the source replays what followed checkpoint 1
    restored.snapshot_state(3)
    restored.notify_checkpoint_complete(3)
    assert store.visible == ["a", "b", "c"]


def test_commit_is_idempotent_across_restores() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    state = w.snapshot_state(1)
    w.notify_checkpoint_complete(1)  # committed before the failure
    assert store.visible == ["a"]
    opened(store, state)  # restoring the same checkpoint commits it again: a no-op
    opened(store, state)
    assert store.visible == ["a"]


def test_restored_entries_of_several_subtasks_are_committed_oldest_first() -> None:
    store = Store()
    a, b = opened(store, name="a"), opened(store, name="b")
    a.write([1], None)
    b.write([2], None)
    sa = a.snapshot_state(5)
    a.notify_checkpoint_aborted(5)
    a.write([3], None)
    sa = a.snapshot_state(6)
    sb = b.snapshot_state(6)
    # rescaled to one subtask: it gets every old entry (in whatever order) and commits all
    opened(store, [*sb, *reversed(sa)], name="c")
    assert store.visible == [1, 2, 3] or store.visible == [2, 1, 3]
    assert store.visible.index(1) < store.visible.index(3)


def test_close_aborts_the_open_txn_but_not_pending_ones() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    w.snapshot_state(1)
    w.write(["b"], None)
    w.close()
    assert store.aborted == ["w-2"]  # the open, never pre-committed txn
    assert "w-1" in store.prepared  # its checkpoint may be complete: a restore commits it
    assert w.current_transaction is None
    w.close()  # closing twice is harmless
    assert store.aborted == ["w-2"]
    with pytest.raises(RuntimeError, match="after close"):
        w.write(["x"], None)


def test_recover_hooks_default_to_commit_and_abort() -> None:
    store = Store()
    w = opened(store)
    w.write(["a"], None)
    w.snapshot_state(1)
    w.recover_and_commit("w-1")
    assert store.visible == ["a"]
    w.recover_and_abort("w-2")
    assert "w-2" in store.aborted


def test_failed_commit_keeps_txn_pending() -> None:
    class Flaky(Writer):
        fail = True

        def commit(self, txn: str) -> None:
            if self.fail:
                raise OSError("store unavailable")
            super().commit(txn)

    store = Store()
    w = Flaky(store)
    w.open(None)
    w.write(["a"], None)
    w.snapshot_state(1)
    with pytest.raises(OSError, match="unavailable"):
        w.notify_checkpoint_complete(1)
    assert w.pending_transactions == [(1, "w-1")]
    w.fail = False
    assert w.snapshot_state(2) == [(1, "w-1"), (2, "w-2")]
    w.notify_checkpoint_complete(2)
    assert store.visible == ["a"]


def test_bad_restored_state_is_reported() -> None:
    with pytest.raises(ValueError, match=r"not a \(checkpoint_id, transaction\) pair"):
        opened(Store(), ["oops"])
