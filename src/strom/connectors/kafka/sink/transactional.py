"""Transactional librdkafka producers for the exactly-once sink: one per transactional id.

* :class:`TransactionalProducer` — a producer bound to one transactional id, initialized
  (``init_transactions``, which also aborts whatever transaction was open under that id),
  with the producer id and epoch it was given (read from librdkafka's ``eos`` debug log; it
  has no API for them).
* :class:`ProducerFactory` — hands out initialized producers and prepares the next id's in a
  background thread, so the first write after a checkpoint does not wait for
  ``init_transactions`` (a coordinator round trip, plus the client's connection set-up).
* :class:`Background` — one piece of work on a daemon thread, collected or abandoned.

Work handed to a background thread is never waited for on close: the thread finishes on its
own and releases what it made. That is safe because every initialization of a transactional
id in this process (``init_transactions`` here, ``InitProducerId`` in the recovery probe) runs
*exclusively per id* (:func:`exclusive_init`) and re-checks its cancellation once it holds the
id: an abandoned initialization either completes before a later attempt's initialization of
the same id starts (which then gets the higher epoch) or does not happen at all. It can
therefore never fence a producer a restarted attempt is using.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaException

from strom.connectors.kafka.errors import KafkaSinkError
from strom.connectors.kafka.sink.producer import ClientLog, create_producer

__all__ = [
    "Background",
    "Cancelled",
    "ProducerFactory",
    "TransactionalProducer",
    "exclusive_init",
]

log = logging.getLogger("strom.connectors.kafka.sink")

# Transactional ids being initialized in this process, each with an event set when done.
_initializing: dict[str, threading.Event] = {}
_initializing_lock = threading.Lock()


class Cancelled(Exception):
    """Background work was abandoned before it initialized its transactional id."""


@contextmanager
def exclusive_init(tid: str, cancelled: Callable[[], bool] | None) -> Iterator[None]:
    """Hold ``tid`` for one initialization: waits while another thread of this process
    initializes the same id, then raises :class:`Cancelled` if the caller was abandoned."""
    while True:
        with _initializing_lock:
            busy = _initializing.get(tid)
            if busy is None:
                mine = threading.Event()
                _initializing[tid] = mine
                break
        busy.wait()
    try:
        if cancelled is not None and cancelled():
            raise Cancelled(tid)
        yield
    finally:
        with _initializing_lock:
            del _initializing[tid]
        mine.set()


class TransactionalProducer:
    """A librdkafka producer with one transactional id, initialized (``init_transactions``
    done, which also aborts whatever transaction was open under that id)."""

    def __init__(
        self,
        conf: dict[str, Any],
        tid: str,
        timeout: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.transactional_id = tid
        self.client_log = ClientLog(f"transactional producer {tid}")
        conf = dict(conf)
        conf["transactional.id"] = tid
        conf["logger"] = self.client_log
        debug = str(conf.get("debug", ""))
        # "eos" debug lines carry the producer id and epoch; librdkafka has no API for them.
        conf["debug"] = ",".join(x for x in (debug, "eos") if x)
        with exclusive_init(tid, cancelled):
            self.producer = create_producer(conf, f"transactional producer {tid}")
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


class Background:
    """One piece of work on a daemon thread: its result is collected with :meth:`result`,
    or it is :meth:`abandon` ed (then ``release`` is applied to the result when it comes)."""

    def __init__(
        self,
        name: str,
        work: Callable[[Callable[[], bool]], Any],
        release: Callable[[Any], None],
    ) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._outcome: tuple[bool, Any] = (False, None)
        self._release = release
        self._work = work
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _cancelled(self) -> bool:
        return self._abandoned

    def _run(self) -> None:
        try:
            outcome: tuple[bool, Any] = (True, self._work(self._cancelled))
        except BaseException as exc:  # handed to whoever collects the result
            outcome = (False, exc)
        with self._lock:
            abandoned = self._abandoned
            self._outcome = outcome
            self._done.set()
        if abandoned and outcome[0]:
            self._release(outcome[1])

    def result(self) -> Any:
        """Wait for the work and return its result (or raise its exception)."""
        self._done.wait()
        ok, value = self._outcome
        if not ok:
            raise value
        return value

    def abandon(self) -> None:
        """Do not wait: the thread releases the result itself (or skips work not started)."""
        with self._lock:
            self._abandoned = True
            finished = self._done.is_set()
        if finished and self._outcome[0]:
            self._release(self._outcome[1])


def _close_producer(value: Any) -> None:
    if isinstance(value, TransactionalProducer):
        value.close()


class ProducerFactory:
    """Hands out initialized transactional producers, preparing the next one in the
    background: ``init_transactions`` takes a round trip to the coordinator (and up to half a
    second when librdkafka has not connected yet), which would otherwise stall the first write
    after every checkpoint."""

    def __init__(self, conf: dict[str, Any], timeout: float) -> None:
        self._conf = conf
        self._timeout = timeout
        self._next: tuple[str, Background] | None = None
        self._offered: TransactionalProducer | None = None

    def offer(self, producer: TransactionalProducer) -> None:
        """Use ``producer`` (initialized already) when its id is taken next."""
        self.close()
        self._offered = producer

    def take(self, tid: str, next_tid: str | None) -> TransactionalProducer:
        """The initialized producer for ``tid``; starts preparing ``next_tid``'s."""
        producer: TransactionalProducer | None = None
        offered, self._offered = self._offered, None
        if offered is not None:
            if offered.transactional_id == tid:
                producer = offered
            else:
                offered.close()
        ready, self._next = self._next, None
        if ready is not None:
            name, work = ready
            if name == tid and producer is None:
                try:
                    producer = work.result()
                except Exception as exc:  # retried below, in this thread, which reports it
                    log.debug("preparing %s failed: %s; trying again", tid, exc)
            else:
                work.abandon()
        if producer is None:
            producer = TransactionalProducer(self._conf, tid, self._timeout)
        if next_tid is not None:
            self._next = (next_tid, self._prepare(next_tid))
        return producer

    def _prepare(self, tid: str) -> Background:
        conf, timeout = self._conf, self._timeout

        def work(cancelled: Callable[[], bool]) -> TransactionalProducer:
            return TransactionalProducer(conf, tid, timeout, cancelled)

        return Background(f"strom-kafka-init-{tid}", work, _close_producer)

    def close(self) -> None:
        """Release what is prepared; background work is abandoned, not waited for."""
        offered, self._offered = self._offered, None
        if offered is not None:
            offered.close()
        ready, self._next = self._next, None
        if ready is not None:
            ready[1].abandon()
