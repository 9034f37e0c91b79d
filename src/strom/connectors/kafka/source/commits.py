"""Offsets committed back to Kafka: for monitoring (lag dashboards), never for recovery.

With checkpointing the offsets of a checkpoint are committed when it completes (Flink's
``commit.offsets.on.checkpoint``), asynchronously; a failed commit is logged and counted, never
fatal, since the checkpoint already holds the truth. Without checkpointing the client's
auto-commit commits *stored* offsets, and an offset is stored only at the ``poll`` after its
batch — the runtime calls ``poll`` again only once the batch went through the chained
operators — so a restart from the group's offsets re-reads rather than skips.

With checkpointing (the reader context says so) the client's auto-commit is off altogether, so
nothing is committed before the first checkpoint completes; a reader that takes snapshots
without having been told (test harnesses) stops storing offsets at its first snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from strom.metrics import MetricGroup

__all__ = ["OffsetCommitter"]

log = logging.getLogger("strom.connectors.kafka.source")
TP = tuple[str, int]


class OffsetCommitter:
    """Tracks what to commit when, for one reader (thread-confined, like the reader)."""

    def __init__(
        self,
        *,
        group: bool,
        auto_commit: bool,
        on_checkpoint: bool,
        metrics: MetricGroup,
        is_finished: Callable[[TP], bool],
    ) -> None:
        self.consumer: Consumer | None = None
        self.auto_commit = auto_commit
        """Whether the client auto-commits the offsets stored after processing."""
        self._group = group
        self._on_checkpoint = on_checkpoint
        self._is_finished = is_finished
        self._checkpointing = False
        self._processed: dict[TP, int] = {}
        self._pending: dict[int, dict[TP, int]] = {}
        self._ok = metrics.counter("commits_succeeded")
        self._failed = metrics.counter("commits_failed")

    # -- without checkpointing: auto-commit of stored offsets -------------------------------

    def emitted(self, key: TP, next_offset: int) -> None:
        """A batch up to ``next_offset`` goes downstream now (stored at the next ``poll``)."""
        if self.auto_commit and not self._checkpointing:
            self._processed[key] = next_offset

    def store_processed(self) -> None:
        """The batches handed out so far were processed: store their offsets."""
        if self._processed:
            processed, self._processed = self._processed, {}
            self._store(processed, commit_finished=True)

    # -- with checkpointing ---------------------------------------------------------------

    def snapshot(self, checkpoint_id: int, offsets: dict[TP, int]) -> None:
        self._checkpointing = True  # only checkpointing jobs snapshot: stop storing offsets
        self._processed = {}
        self._pending[checkpoint_id] = {k: o for k, o in offsets.items() if o >= 0}

    def checkpoint_complete(self, checkpoint_id: int) -> None:
        offsets = self._pending.pop(checkpoint_id, None)
        for older in [c for c in self._pending if c < checkpoint_id]:
            del self._pending[older]  # subsumed by this one
        consumer = self.consumer
        if not offsets or not self._on_checkpoint or not self._group or consumer is None:
            return
        if self.auto_commit:
            # stored too, so that the client's auto-commit never commits older offsets
            self._store(offsets, commit_finished=False)
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
        except KafkaException as exc:
            self._failed.inc()
            log.warning(
                "committing the offsets of checkpoint %d failed (monitoring only): %s",
                checkpoint_id,
                exc,
            )

    def checkpoint_aborted(self, checkpoint_id: int) -> None:
        self._pending.pop(checkpoint_id, None)

    # -- client ---------------------------------------------------------------------------

    def on_commit(self, err: ClientError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit`` callback (served inside ``consume``)."""
        if err is None:
            self._ok.inc()
        elif err.code() != ClientError._NO_OFFSET:
            self._failed.inc()
            log.warning("offset commit failed (offsets are for monitoring only): %s", err)

    def _store(self, offsets: dict[TP, int], *, commit_finished: bool) -> None:
        """Store offsets for auto-commit; a finished partition is no longer assigned and
        cannot be stored, so its final offset is committed right away instead."""
        consumer = self.consumer
        if not offsets or consumer is None or not self._group:
            return
        stored: list[TopicPartition] = []
        final: list[TopicPartition] = []
        for (t, p), o in offsets.items():
            (final if self._is_finished((t, p)) else stored).append(TopicPartition(t, p, o))
        try:
            if stored:
                consumer.store_offsets(offsets=stored)
            if final and commit_finished:
                consumer.commit(offsets=final, asynchronous=True)
        except KafkaException as exc:
            log.debug("storing offsets failed: %s", exc)
