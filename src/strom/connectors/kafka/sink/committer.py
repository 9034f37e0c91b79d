"""Committing and aborting Kafka transactions by id, for the exactly-once sink's recovery.

* :class:`Committer` commits a recorded transaction with Kafka's ``EndTxn`` (``protocol.py``),
  from any process. It is **idempotent** and only classifies outcomes, as Flink's committer:

  =============================================  ==============================================
  broker answer                                  meaning → action
  =============================================  ==============================================
  NONE                                           committed now, or had been (a repeated commit
                                                 of a completed transaction succeeds)
  COORDINATOR_* / NOT_COORDINATOR / CONCURRENT_  transient → retry with backoff until timeout
  TRANSACTIONS / REQUEST_TIMED_OUT
  INVALID_PRODUCER_EPOCH / PRODUCER_FENCED /     a newer producer took the id over, or the id
  INVALID_PRODUCER_ID_MAPPING                    expired: the transaction was completed long
                                                 ago → warning, done
  INVALID_TXN_STATE                              the broker aborted it (transaction timeout
                                                 shorter than the outage): its records are lost
                                                 → ``KafkaSinkError``
  =============================================  ==============================================

* :func:`abort_lineage` aborts what a crashed attempt left open: ``init_transactions`` on
  ``{prefix}-{lineage}-{seq}`` for ``seq`` upward aborts any open transaction under that id,
  until an id the broker has never seen (epoch 0) ends the probe.
* :class:`TransactionalProducer` is one librdkafka producer bound to one transactional id,
  with the producer id and epoch it was given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink.producer import ClientLog
from strom.connectors.kafka.sink.protocol import (
    ERROR_NAMES,
    BrokerConnection,
    ProtocolError,
    UnsupportedSecurity,
)
from strom.connectors.kafka.sink.transactions import (
    MARK_COPIES,
    KafkaTransaction,
    LineageMark,
    transactional_id,
)

__all__ = [
    "Committer",
    "ProducerFactory",
    "TransactionalProducer",
    "abort_lineage",
    "abort_lingering_lineages",
    "split_restored",
]

log = logging.getLogger("strom.connectors.kafka.sink")

_RETRIABLE = {7, 14, 15, 16, 51}
_TAKEN_OVER = {47, 49, 90}
_INVALID_STATE = 48
_BACKOFF = (0.05, 1.0)  # first and longest wait between retries, seconds


def _servers(conf: Mapping[str, Any]) -> list[tuple[str, int]]:
    out = []
    for item in str(conf["bootstrap.servers"]).split(","):
        item = item.strip().rsplit("://", 1)[-1]
        host, _, port = item.rpartition(":")
        out.append((host.strip("[]") or "localhost", int(port or 9092)))
    return out


class Committer:
    """Commits recorded transactions by id (module docstring). Thread-confined."""

    def __init__(self, conf: Mapping[str, Any], timeout: float, where: str) -> None:
        self._conf = conf
        self._timeout = timeout
        self._where = where

    def commit(self, txn: KafkaTransaction) -> None:
        tid = txn.transactional_id
        if tid is None:
            return  # an empty transaction: nothing was written, nothing to commit
        if txn.producer_id < 0 or txn.epoch < 0:
            raise KafkaSinkError(
                f"{self._where}: transaction {tid} has no producer id/epoch; cannot commit it"
            )
        deadline = time.monotonic() + self._timeout
        delay, last = _BACKOFF[0], ""
        while True:
            try:
                code = self._end_txn(tid, txn.producer_id, txn.epoch)
            except UnsupportedSecurity as exc:
                raise KafkaSinkError(
                    f"{self._where}: cannot commit recovered transaction {tid}: {exc} (the "
                    "recovery commit speaks the Kafka protocol itself; see "
                    "docs/connectors/kafka.md)"
                ) from exc
            except (OSError, ProtocolError) as exc:
                code, last = -1, f"{type(exc).__name__}: {exc}"
            if code == 0:
                log.info("%s: committed recovered transaction %s", self._where, tid)
                return
            if code in _TAKEN_OVER:
                log.warning(
                    "%s: transaction %s was taken over by a newer producer (%s): it was "
                    "completed before; nothing to commit",
                    self._where,
                    tid,
                    ERROR_NAMES[code],
                )
                return
            if code == _INVALID_STATE:
                raise KafkaSinkError(
                    f"{self._where}: transaction {tid} (producer id {txn.producer_id}, epoch "
                    f"{txn.epoch}) was aborted by the broker before it could be committed: its "
                    f"{txn.records} records are lost. The job was down longer than "
                    "transaction_timeout, or the transactional id was reused elsewhere"
                )
            if code >= 0 and code not in _RETRIABLE:
                raise KafkaSinkError(
                    f"{self._where}: committing transaction {tid} failed: "
                    f"{ERROR_NAMES.get(code, f'error {code}')}"
                )
            if code >= 0:
                last = ERROR_NAMES.get(code, str(code))
            if time.monotonic() + delay > deadline:
                raise KafkaSinkError(
                    f"{self._where}: committing transaction {tid} did not succeed within "
                    f"{self._timeout:g} s: {last}"
                )
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    def _end_txn(self, tid: str, producer_id: int, epoch: int) -> int:
        timeout = min(self._timeout, 10.0)
        last: Exception | None = None
        for host, port in _servers(self._conf):
            try:
                with BrokerConnection(host, port, self._conf, timeout) as conn:
                    where = conn.find_coordinator(tid)
                if where == (host, port):
                    with BrokerConnection(host, port, self._conf, timeout) as conn:
                        return conn.end_txn(tid, producer_id, epoch, True)
                with BrokerConnection(*where, self._conf, timeout) as conn:
                    return conn.end_txn(tid, producer_id, epoch, True)
            except ProtocolError as exc:
                if exc.code in _RETRIABLE:
                    return exc.code
                if isinstance(exc, UnsupportedSecurity) or exc.code >= 0:
                    raise
                last = exc
            except OSError as exc:
                last = exc
        assert last is not None
        raise last


class TransactionalProducer:
    """A librdkafka producer with one transactional id, initialized (``init_transactions``
    done, which also aborts whatever transaction was open under that id)."""

    def __init__(self, conf: dict[str, Any], tid: str, timeout: float) -> None:
        self.transactional_id = tid
        self.client_log = ClientLog(f"transactional producer {tid}")
        conf = dict(conf)
        conf["transactional.id"] = tid
        conf["logger"] = self.client_log
        debug = str(conf.get("debug", ""))
        # "eos" debug lines carry the producer id and epoch; librdkafka has no API for them.
        conf["debug"] = ",".join(x for x in (debug, "eos") if x)
        self.producer = Producer(conf)
        try:
            self.producer.init_transactions(timeout)
        except KafkaException as exc:
            raise KafkaSinkError(f"init_transactions for {tid} failed: {exc}") from exc
        self.producer.poll(0)  # serves the log lines with the producer id

    @property
    def producer_id(self) -> int:
        return self.client_log.producer_id

    @property
    def epoch(self) -> int:
        return self.client_log.epoch

    def close(self) -> None:
        # Never aborts: a pre-committed transaction stays open for the recovery commit.
        try:
            self.producer.purge()
            self.producer.flush(0)
        except KafkaException as exc:
            # A fenced (taken over) or otherwise dead producer has nothing left to release.
            log.debug("closing %s: %s", self.transactional_id, exc)


def abort_lineage(
    conf: dict[str, Any],
    prefix: str,
    lineage: int,
    start: int,
    timeout: float,
    where: str,
    keep: list[TransactionalProducer] | None = None,
) -> int:
    """Abort transactions left open under ``{prefix}-{lineage}-{seq}``, ``seq >= start``;
    returns the first seq the probe found never used (now initialized by the probe). With
    ``keep``, that last probe's producer is appended to it instead of closed, ready for the
    lineage's next transaction."""
    seq = start
    while True:
        probe = TransactionalProducer(conf, transactional_id(prefix, lineage, seq), timeout)
        epoch = probe.epoch
        if epoch == 0 and keep is not None:
            keep.append(probe)
        else:
            probe.close()
        if epoch < 0:
            raise KafkaSinkError(
                f"{where}: cannot tell whether {probe.transactional_id} was used (no epoch in "
                "the client's log)"
            )
        if epoch == 0:
            if seq > start:
                log.info(
                    "%s: aborted lingering transactions %s ... %s",
                    where,
                    transactional_id(prefix, lineage, start),
                    transactional_id(prefix, lineage, seq - 1),
                )
            return seq
        seq += 1


class ProducerFactory:
    """Hands out initialized transactional producers, preparing the next one in the
    background: ``init_transactions`` takes a round trip to the coordinator (and up to half a
    second when librdkafka has not connected yet), which would otherwise stall the first write
    after every checkpoint."""

    def __init__(self, conf: dict[str, Any], timeout: float) -> None:
        self._conf = conf
        self._timeout = timeout
        self._next: tuple[str, threading.Thread, list[Any]] | None = None
        self._offered: TransactionalProducer | None = None

    def offer(self, producer: TransactionalProducer) -> None:
        """Use ``producer`` (initialized already) when its id is taken next."""
        self.close()
        self._offered = producer

    def take(self, tid: str, next_tid: str | None) -> TransactionalProducer:
        ready = self._next
        self._next = None
        producer: TransactionalProducer | None = None
        offered, self._offered = self._offered, None
        if offered is not None:
            if offered.transactional_id == tid:
                producer = offered
            else:
                offered.close()
        if ready is not None:
            name, thread, box = ready
            thread.join()
            if name == tid and box and isinstance(box[0], TransactionalProducer):
                producer = box[0]
            elif box and isinstance(box[0], TransactionalProducer):
                box[0].close()
        if producer is None:
            producer = TransactionalProducer(self._conf, tid, self._timeout)
        if next_tid is not None:
            self._prepare(next_tid)
        return producer

    def _prepare(self, tid: str) -> None:
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(TransactionalProducer(self._conf, tid, self._timeout))
            except Exception as exc:  # retried in the task thread, which then reports it
                box.append(exc)

        thread = threading.Thread(target=run, name=f"strom-kafka-init-{tid}", daemon=True)
        thread.start()
        self._next = (tid, thread, box)

    def close(self) -> None:
        offered, self._offered = getattr(self, "_offered", None), None
        if offered is not None:
            offered.close()
        ready, self._next = self._next, None
        if ready is not None:
            ready[1].join()
            if ready[2] and isinstance(ready[2][0], TransactionalProducer):
                ready[2][0].close()


def split_restored(
    restored: list[Any] | None,
) -> tuple[list[Any] | None, list[LineageMark]]:
    """Separate lineage marks from ``(checkpoint_id, transaction)`` entries."""
    if restored is None:
        return None, []
    txns: list[Any] = []
    marks: list[LineageMark] = []
    for entry in restored:
        if (
            isinstance(entry, tuple | list)
            and len(entry) == 2
            and isinstance(entry[1], LineageMark)
        ):
            marks.append(entry[1])
        else:
            txns.append(entry)
    return txns, marks


def abort_lingering_lineages(
    marks: list[LineageMark],
    conf: dict[str, Any],
    subtask: int,
    parallelism: int,
    timeout: float,
    where: str,
) -> dict[tuple[str, int], int]:
    """Abort the leftovers of every lineage this subtask owns (``lineage % parallelism ==
    subtask``); returns ``{(prefix, lineage): first free seq}`` for them."""
    writers = {m.writer for m in marks}
    expected = max(m.parallelism for m in marks)
    if len(writers) < expected:
        raise KafkaSinkError(
            f"{where}: the checkpoint's lineage marks of {expected - len(writers)} old subtasks "
            f"did not reach this subtask; an exactly-once Kafka sink restores at parallelism "
            f"<= {MARK_COPIES} only"
        )
    lineages: dict[tuple[str, int], int] = {}
    for m in marks:
        for lineage, seq in m.next_seq.items():
            key = (m.prefix, lineage)
            lineages[key] = max(seq, lineages.get(key, 0))
    out: dict[tuple[str, int], int] = {}
    for (prefix, lineage), seq in sorted(lineages.items()):
        if lineage % parallelism == subtask:
            out[(prefix, lineage)] = abort_lineage(conf, prefix, lineage, seq, timeout, where)
    return out
