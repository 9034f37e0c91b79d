"""The exactly-once Kafka sink writer: Kafka transactions tied to checkpoints.

Built on ``TwoPhaseCommitSinkWriter`` (``strom.connectors.base.two_phase``):

1. A transaction takes the next id ``{prefix}-{subtask}-{seq}`` when it gets its first record
   and a producer initialized for that id (prepared one ahead in the background).
2. **Pre-commit** at the checkpoint snapshot: flush — every record acknowledged — and record
   the transaction's producer id and epoch in the checkpoint.
3. **Commit** when the checkpoint is complete: ``commit_transaction`` on the live producer.
4. **Recovery** from a checkpoint: every recorded transaction is committed by id with Kafka's
   ``EndTxn`` (``committer.py``; librdkafka itself could only abort it), idempotently. Then
   each lineage's ids from its first non-pending seq upward are probed and aborted (what the
   crashed attempt left open), the subtask's own lineage continues after them, and lineages of
   subtasks that no longer exist (scale-down) are adopted by subtask ``lineage % parallelism``,
   which aborts their leftovers and keeps their marks so a later scale-up continues them.
5. A fresh start (no checkpoint) probes the subtask's lineage from seq 0: what an earlier run
   under the same prefix left open is aborted. Prefixes must therefore be unique per job.

The probes of 4 and 5 run in a background thread while the job starts; the first transaction
that takes an id, and the next snapshot, wait for them.

Guarantee: **exactly-once** with checkpointing on and a replayable source. Without
checkpointing nothing is ever committed. Records become visible to ``read_committed``
consumers only when the checkpoint covering them completes. Transactions pending when the job
goes down are committed by the restore, provided it comes before the broker's transaction
timeout (``transaction_timeout``) aborts them — in that case the restore fails loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaException

from strom.connectors.base import TwoPhaseCommitSinkWriter, WriterContext
from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink.committer import (
    Committer,
    abort_lineage,
    abort_lingering_lineages,
    split_restored,
)
from strom.connectors.kafka.sink.producer import (
    FLUSH_MARGIN,
    DeliveryTracker,
    flush_all,
    with_callbacks,
)
from strom.connectors.kafka.sink.sink import KafkaSink
from strom.connectors.kafka.sink.transactional import (
    Background,
    ProducerFactory,
    TransactionalProducer,
)
from strom.connectors.kafka.sink.transactions import (
    MARK_COPIES,
    KafkaTransaction,
    LineageMark,
    transactional_id,
)
from strom.connectors.kafka.sink.writer import make_emitter, writer_label

__all__ = ["TransactionalWriter"]

T = TypeVar("T")
log = logging.getLogger("strom.connectors.kafka.sink")

_Lineages = tuple[dict[tuple[str, int], int], list[TransactionalProducer]]


def _release(result: _Lineages) -> None:
    for producer in result[1]:
        producer.close()


class TransactionalWriter(TwoPhaseCommitSinkWriter[T, KafkaTransaction], Generic[T]):
    """One subtask's transactional producers (see the module docstring)."""

    def __init__(self, sink: KafkaSink[T], ctx: WriterContext) -> None:
        super().__init__()
        assert sink.transactional_id_prefix is not None
        self._sink = sink
        self._ctx = ctx
        self._prefix = sink.transactional_id_prefix
        self._where = writer_label(sink, ctx)
        self._tracker = DeliveryTracker(
            log_failures_only=False, metrics=ctx.metrics, where=self._where
        )
        self._emitter = make_emitter(sink, ctx, self._tracker)
        self._conf = with_callbacks(sink.producer_config(), self._tracker)
        self._timeout = sink.request_timeout
        self._flush_timeout = sink.delivery_timeout + FLUSH_MARGIN
        self._committer = Committer(self._conf, sink.request_timeout, self._where)
        self._factory = ProducerFactory(self._conf, sink.request_timeout)
        self._live: dict[str, TransactionalProducer] = {}
        self._probe: Background | None = None
        self._next_seq = 0
        self._adopted: dict[int, int] = {}
        self._marks: list[LineageMark] = []
        self._input_ended = False
        self._committed = ctx.metrics.counter("transactions_committed")

    # -- lifecycle --------------------------------------------------------------------------
    def open(self, restored_state: list[Any] | None) -> None:
        if self._ctx.parallelism > MARK_COPIES:
            raise KafkaSinkError(
                f"{self._where}: an exactly-once Kafka sink runs at parallelism <= "
                f"{MARK_COPIES}, not {self._ctx.parallelism}"
            )
        txns, self._marks = split_restored(restored_state)
        self._emitter.builder.open()
        self._sink.partitioner.open(self._ctx.subtask_index, self._ctx.parallelism)
        super().open(txns)

    def abort_lingering(self, restored: list[tuple[int, KafkaTransaction]] | None) -> None:
        # Runs in the background while the job starts; collected by _collect_probe().
        marks, conf, timeout, where_ = self._marks, self._conf, self._timeout, self._where
        prefix, me, parallelism = self._prefix, self._ctx.subtask_index, self._ctx.parallelism

        def probe(cancelled: Callable[[], bool]) -> _Lineages:
            keep: list[TransactionalProducer] = []
            found: dict[tuple[str, int], int] = {}
            if marks:
                found = abort_lingering_lineages(
                    marks, conf, me, parallelism, timeout, where_, cancelled, keep
                )
            if (prefix, me) not in found:
                # A fresh start, or a lineage the checkpoint does not know: whatever an earlier
                # run under this prefix left open is aborted from seq 0 up. The producer the
                # probe prepares for the first free id becomes the first transaction's.
                found[(prefix, me)] = abort_lineage(
                    conf, prefix, me, 0, timeout, where_, keep, cancelled
                )
            return found, keep

        self._probe = Background(f"strom-kafka-probe-{prefix}-{me}", probe, _release)

    def _collect_probe(self) -> None:
        """Wait for the lingering-transaction probe and take over its results."""
        probe, self._probe = self._probe, None
        if probe is None:
            return
        try:
            found, keep = probe.result()
        except KafkaSinkError:
            raise
        except Exception as exc:
            raise KafkaSinkError(
                f"{self._where}: aborting lingering transactions failed: {exc}"
            ) from exc
        me = self._ctx.subtask_index
        self._next_seq = found[(self._prefix, me)]
        self._adopted = {
            lineage: seq
            for (prefix, lineage), seq in found.items()
            if prefix == self._prefix and lineage != me
        }
        nxt = transactional_id(self._prefix, me, self._next_seq)
        for producer in keep:
            if producer.transactional_id == nxt:
                self._factory.offer(producer)
            else:
                producer.close()

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self._collect_probe()
        entries = super().snapshot_state(checkpoint_id)
        mark = LineageMark(
            self._prefix,
            self._ctx.subtask_index,
            self._ctx.parallelism,
            {**self._adopted, self._ctx.subtask_index: self._next_seq},
        )
        # The block of identical marks reaches every subtask of any restore at parallelism
        # <= MARK_COPIES despite the round-robin dealing (transactions.py).
        return [(checkpoint_id, mark)] * MARK_COPIES + entries

    def flush(self, end_of_input: bool) -> None:
        # Pre-commit flushes; here only failures that already happened are surfaced early.
        self._tracker.check()
        if end_of_input:
            # No transaction begins after the input ended: nothing more to prepare.
            self._input_ended = True
            self._factory.close()

    def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.abandon()
        try:
            super().close()
        finally:
            for producer in self._live.values():
                producer.close()  # pre-committed ones stay open for the recovery commit
            self._live.clear()
            self._factory.close()

    # -- transaction hooks ------------------------------------------------------------------
    def begin_transaction(self) -> KafkaTransaction:
        return KafkaTransaction()

    def write_to_transaction(
        self, txn: KafkaTransaction, values: list[T], timestamps: list[int] | None
    ) -> None:
        if not values:
            return
        if txn.transactional_id is None:
            self._start(txn)
        assert txn.transactional_id is not None
        producer = self._live[txn.transactional_id].producer
        self._emitter.emit(producer, values, timestamps)
        txn.records += len(values)

    def _start(self, txn: KafkaTransaction) -> None:
        self._collect_probe()
        me, seq = self._ctx.subtask_index, self._next_seq
        tid = transactional_id(self._prefix, me, seq)
        following = None if self._input_ended else transactional_id(self._prefix, me, seq + 1)
        live = self._factory.take(tid, following)
        self._next_seq = seq + 1
        self._live[tid] = live
        try:
            live.producer.begin_transaction()
        except KafkaException as exc:
            raise KafkaSinkError(f"{self._where}: begin_transaction on {tid}: {exc}") from exc
        txn.transactional_id, txn.lineage, txn.seq = tid, me, seq
        txn.producer_id, txn.epoch = live.producer_id, live.epoch

    def pre_commit(self, txn: KafkaTransaction) -> None:
        tid = txn.transactional_id
        if tid is None:
            return
        live = self._live[tid]
        flush_all(live.producer, self._tracker, self._flush_timeout, f"pre-commit of {tid}")
        txn.producer_id, txn.epoch = live.producer_id, live.epoch
        if txn.producer_id < 0 or txn.epoch < 0:
            raise KafkaSinkError(
                f"{self._where}: no producer id/epoch for {tid} in librdkafka's log; a "
                "recovery could not commit it"
            )

    def commit(self, txn: KafkaTransaction) -> None:
        tid = txn.transactional_id
        if tid is None:
            return
        live = self._live.get(tid)
        if live is None:
            self._committer.commit(txn)  # restored, or committed already: idempotent
        else:
            self._commit_live(tid, live)
            del self._live[tid]
            live.close()
        self._committed.inc()

    def _commit_live(self, tid: str, live: TransactionalProducer) -> None:
        # A retriable failure (a request timed out) may be retried until the timeout; anything
        # else fails the job, whose restore commits the transaction by id (it stays pending).
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                live.producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = bool(getattr(err, "retriable", lambda: False)())
                if not retriable or time.monotonic() >= deadline:
                    raise KafkaSinkError(f"{self._where}: commit of {tid} failed: {exc}") from exc
                log.warning("%s: commit of %s failed, retrying: %s", self._where, tid, exc)

    def abort(self, txn: KafkaTransaction) -> None:
        tid = txn.transactional_id
        live = self._live.pop(tid, None) if tid is not None else None
        if live is None:
            return
        try:
            live.producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            # The next start's probe aborts it (init_transactions on its id).
            log.warning("%s: abort of %s failed: %s", self._where, tid, exc)
        finally:
            live.close()
