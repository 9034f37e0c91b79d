"""Recovering the exactly-once sink's transactions from a checkpoint: commit by id, abort the
leftovers.

* :class:`Committer` commits a recorded transaction with Kafka's ``EndTxn`` (``protocol.py``),
  from any process. It is **idempotent** and classifies the broker's answer:

  ==============================================  =============================================
  broker answer                                   meaning → action
  ==============================================  =============================================
  NONE                                            committed now, or had been (a repeated commit
                                                  of a completed transaction succeeds)
  COORDINATOR_* / NOT_COORDINATOR / CONCURRENT_   transient → retry with backoff until timeout
  TRANSACTIONS / REQUEST_TIMED_OUT
  INVALID_PRODUCER_ID_MAPPING                     the id expired (``transactional.id.expiration
                                                  .ms`` after its last use): the transaction
                                                  completed long ago → warning, done
  PRODUCER_FENCED / INVALID_PRODUCER_EPOCH /      the broker aborted it — its transaction
  INVALID_TXN_STATE                               timeout ran out first (Kafka bumps the epoch
                                                  when it aborts on timeout), or another
                                                  producer took the id over — so its records
                                                  are lost → ``KafkaSinkError``
  ==============================================  =============================================

  A pending transaction's id is never initialized again by this sink (each id carries one
  transaction and the probe below starts above every pending seq), so a fenced answer cannot
  mean "committed by us earlier".
* :func:`abort_lineage` aborts what a crashed attempt left open under one lineage:
  ``InitProducerId`` (what ``init_transactions`` sends; it aborts a transaction open under the
  id) on ``{prefix}-{lineage}-{seq}`` for ``seq`` upward, until an id the broker has never seen
  (epoch 0). It uses the recovery client, one connection per coordinator for the whole probe:
  about a millisecond per id, where a librdkafka producer per id would take 50 ms to 0.5 s to
  connect. :func:`abort_lingering_lineages` does that for every lineage a restoring subtask
  owns.
* :func:`recover` does both for a restored checkpoint; the at-least-once writer uses it when it
  restores an exactly-once sink's checkpoint (the guarantee was lowered).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink.protocol import (
    ERROR_NAMES,
    BrokerConnection,
    ProtocolError,
    UnsupportedSecurity,
    error_name,
)
from strom.connectors.kafka.sink.security import connect, servers
from strom.connectors.kafka.sink.transactional import TransactionalProducer, exclusive_init
from strom.connectors.kafka.sink.transactions import (
    MARK_COPIES,
    KafkaTransaction,
    LineageMark,
    transactional_id,
)

__all__ = [
    "Committer",
    "abort_lineage",
    "abort_lingering_lineages",
    "recover",
    "split_restored",
]

log = logging.getLogger("strom.connectors.kafka.sink")

_NOT_COORDINATOR = 16
_RETRIABLE = {7, 14, 15, _NOT_COORDINATOR, 51}
_EXPIRED = 49
_LOST = {47, 48, 90}
_BACKOFF = (0.05, 1.0)  # first and longest wait between retries, seconds
_CONNECT_TIMEOUT = 10.0


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
            code: int | None
            try:
                code = self._end_txn(tid, txn.producer_id, txn.epoch)
            except UnsupportedSecurity as exc:
                raise KafkaSinkError(
                    f"{self._where}: cannot commit recovered transaction {tid}: {exc} (the "
                    "recovery commit speaks the Kafka protocol itself; see "
                    "docs/connectors/kafka.md)"
                ) from exc
            except (OSError, ProtocolError) as exc:
                if _hopeless(exc):
                    # Refused (authentication, TLS, versions): trying again won't help.
                    raise KafkaSinkError(
                        f"{self._where}: committing transaction {tid} failed: {exc}"
                    ) from exc
                code, last = None, f"{type(exc).__name__}: {exc}"
            if code == 0:
                log.info("%s: committed recovered transaction %s", self._where, tid)
                return
            if code == _EXPIRED:
                log.warning(
                    "%s: transaction %s is no longer known to the broker (%s): it completed "
                    "longer ago than transactional.id.expiration.ms; nothing to commit",
                    self._where,
                    tid,
                    ERROR_NAMES[code],
                )
                return
            if code in _LOST:
                raise KafkaSinkError(
                    f"{self._where}: transaction {tid} (producer id {txn.producer_id}, epoch "
                    f"{txn.epoch}) was aborted before it could be committed "
                    f"({ERROR_NAMES[code]}): its {txn.records} records are lost. The job was "
                    "down longer than transaction_timeout, or another producer used this "
                    "transactional id (transactional_id_prefix must be unique per job)"
                )
            if code is not None and code not in _RETRIABLE:
                raise KafkaSinkError(
                    f"{self._where}: committing transaction {tid} failed: {error_name(code)}"
                )
            if code is not None:
                last = error_name(code)
            if time.monotonic() + delay > deadline:
                raise KafkaSinkError(
                    f"{self._where}: committing transaction {tid} did not succeed within "
                    f"{self._timeout:g} s: {last}"
                )
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    def _end_txn(self, tid: str, producer_id: int, epoch: int) -> int:
        """FindCoordinator on a bootstrap server, then EndTxn(commit) at the coordinator —
        on the same connection when the bootstrap server is the coordinator."""
        timeout = min(self._timeout, _CONNECT_TIMEOUT)
        last: Exception | None = None
        for host, port in servers(self._conf):
            try:
                with connect(host, port, self._conf, timeout) as conn:
                    coordinator = conn.find_coordinator(tid)
                    if coordinator == (host, port):
                        return conn.end_txn(tid, producer_id, epoch, True)
                with connect(*coordinator, self._conf, timeout) as conn:
                    return conn.end_txn(tid, producer_id, epoch, True)
            except ProtocolError as exc:
                if exc.code in _RETRIABLE:
                    return exc.code
                if isinstance(exc, UnsupportedSecurity) or exc.code is not None:
                    raise
                last = exc
            except OSError as exc:
                last = exc
        assert last is not None
        raise last


class _Coordinators:
    """Connections for a probe: one to a bootstrap server (to find coordinators) and one per
    transaction coordinator, kept open across ids."""

    def __init__(self, conf: Mapping[str, Any], timeout: float) -> None:
        self._conf = conf
        self._timeout = min(timeout, _CONNECT_TIMEOUT)
        self._bootstrap: BrokerConnection | None = None
        self._open: dict[tuple[str, int], BrokerConnection] = {}

    def coordinator(self, tid: str) -> BrokerConnection:
        if self._bootstrap is None:
            last: Exception | None = None
            for host, port in servers(self._conf):
                try:
                    self._bootstrap = connect(host, port, self._conf, self._timeout)
                    self._open[(host, port)] = self._bootstrap  # it may be a coordinator too
                    break
                except UnsupportedSecurity:
                    raise
                except (OSError, ProtocolError) as exc:
                    last = exc
            if self._bootstrap is None:
                assert last is not None
                raise last
        address = self._bootstrap.find_coordinator(tid)
        conn = self._open.get(address)
        if conn is None:
            conn = self._open[address] = connect(*address, self._conf, self._timeout)
        return conn

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._bootstrap = None
        self._open.clear()


def _init_producer_id(
    coordinators: _Coordinators, tid: str, txn_ms: int, timeout: float, where: str
) -> int:
    """InitProducerId for ``tid`` (aborting what is open under it); returns the new epoch."""
    deadline = time.monotonic() + timeout
    delay, last = _BACKOFF[0], ""
    while True:
        code: int | None
        try:
            code, _producer_id, epoch = coordinators.coordinator(tid).init_producer_id(tid, txn_ms)
        except UnsupportedSecurity as exc:
            raise KafkaSinkError(f"{where}: cannot probe {tid}: {exc}") from exc
        except (OSError, ProtocolError) as exc:
            if _hopeless(exc):
                raise KafkaSinkError(f"{where}: probing {tid} failed: {exc}") from exc
            coordinators.close()  # reconnect: the broker went away or the coordinator moved
            code, last = None, f"{type(exc).__name__}: {exc}"
        if code == 0:
            return epoch
        if code is not None and code not in _RETRIABLE:
            raise KafkaSinkError(f"{where}: probing {tid} failed: {error_name(code)}")
        if code is not None:
            # CONCURRENT_TRANSACTIONS while the coordinator aborts what was open, or a
            # coordinator that moved (NOT_COORDINATOR: find it again)
            last = error_name(code)
            if code == _NOT_COORDINATOR:
                coordinators.close()
        if time.monotonic() + delay > deadline:
            raise KafkaSinkError(
                f"{where}: probing {tid} did not succeed within {timeout:g} s: {last}"
            )
        time.sleep(delay)
        delay = min(delay * 2, _BACKOFF[1])


def abort_lineage(
    conf: dict[str, Any],
    prefix: str,
    lineage: int,
    start: int,
    timeout: float,
    where: str,
    keep: list[TransactionalProducer] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Abort transactions left open under ``{prefix}-{lineage}-{seq}``, ``seq >= start``;
    returns the first seq the probe found never used. With ``keep``, a librdkafka producer
    initialized for that seq is appended to it, ready for the lineage's next transaction."""
    txn_ms = int(conf.get("transaction.timeout.ms", 60_000))
    coordinators = _Coordinators(conf, timeout)
    seq = start
    try:
        while True:
            tid = transactional_id(prefix, lineage, seq)
            with exclusive_init(tid, cancelled):
                epoch = _init_producer_id(coordinators, tid, txn_ms, timeout, where)
            if epoch == 0:
                break
            seq += 1
    finally:
        coordinators.close()
    if seq > start:
        log.info(
            "%s: aborted lingering transactions %s ... %s",
            where,
            transactional_id(prefix, lineage, start),
            transactional_id(prefix, lineage, seq - 1),
        )
    if keep is not None:
        keep.append(
            TransactionalProducer(conf, transactional_id(prefix, lineage, seq), timeout, cancelled)
        )
    return seq


def _hopeless(exc: OSError | ProtocolError) -> bool:
    """A failure that retrying cannot cure: the broker refused with an error code that is not
    transient (authentication, authorization, versions), or TLS refused the certificate —
    unlike a connection that was refused, reset or timed out."""
    if isinstance(exc, ProtocolError):
        return exc.code is not None and exc.code not in _RETRIABLE
    transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    return isinstance(exc, ssl.SSLError) and not isinstance(exc, transient)


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
    cancelled: Callable[[], bool] | None = None,
    keep: list[TransactionalProducer] | None = None,
) -> dict[tuple[str, int], int]:
    """Abort the leftovers of every lineage this subtask owns (``lineage % parallelism ==
    subtask``); returns ``{(prefix, lineage): first free seq}`` for them. With ``keep``, the
    probe's last producer of the subtask's own lineage (under the marks' prefix) is appended
    to it, initialized for that lineage's next transaction."""
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
            mine = keep if lineage == subtask else None
            out[(prefix, lineage)] = abort_lineage(
                conf, prefix, lineage, seq, timeout, where, mine, cancelled
            )
    return out


def recover(
    restored_state: list[Any] | None,
    conf: dict[str, Any],
    subtask: int,
    parallelism: int,
    timeout: float,
    where: str,
) -> None:
    """Commit the transactions an exactly-once sink's checkpoint recorded and abort what its
    crashed attempt left open (for a writer that does not continue its lineages)."""
    txns, marks = split_restored(restored_state)
    committer = Committer(conf, timeout, where)
    for entry in txns or ():
        txn = entry[1] if isinstance(entry, tuple | list) and len(entry) == 2 else None
        if isinstance(txn, KafkaTransaction):
            committer.commit(txn)
    if marks:
        abort_lingering_lineages(marks, conf, subtask, parallelism, timeout, where)
