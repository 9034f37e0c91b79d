"""What the exactly-once Kafka sink keeps in checkpoints: transactions and id lineages.

Transactional ids are ``{prefix}-{lineage}-{seq}``. A *lineage* is a subtask index; ``seq``
counts that lineage's transactions without gaps (an id is taken only when its transaction
gets its first record, so empty checkpoints use none). Each id is used for one transaction
only, which is what makes a recovery commit safe: the recorded producer id and epoch can only
ever match that one transaction.

A checkpoint holds two kinds of entries, both ``(checkpoint_id, object)`` pairs:

* :class:`KafkaTransaction` — pre-committed and waiting for its checkpoint; committed by
  whichever subtask restores it.
* :class:`LineageMark` — for every lineage a subtask owns, the first ``seq`` that is not
  pending. Ids from there up may be open in the broker (begun after the checkpoint by the
  attempt that crashed); recovery aborts them by probing upward until an id that was never
  used. Marks are written in a block of :data:`MARK_COPIES` identical entries because the
  runtime deals restored entries round-robin: a block at least as long as the new
  parallelism gives *every* new subtask a copy of *every* mark, so each knows all lineages.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MARK_COPIES", "KafkaTransaction", "LineageMark", "transactional_id"]

#: Copies of each subtask's lineage mark per checkpoint; also the highest parallelism an
#: exactly-once Kafka sink supports.
MARK_COPIES = 128


def transactional_id(prefix: str, lineage: int, seq: int) -> str:
    return f"{prefix}-{lineage}-{seq}"


@dataclass
class KafkaTransaction:
    """One Kafka transaction of the exactly-once sink.

    ``transactional_id`` is ``None`` until the first record (an empty transaction has nothing
    to commit and uses no id). ``producer_id`` and ``epoch`` are known once pre-committed; with
    them any process can commit the transaction (Kafka's EndTxn), which is how a restored
    checkpoint commits what the crashed attempt had pre-committed.
    """

    transactional_id: str | None = None
    lineage: int = -1
    seq: int = -1
    producer_id: int = -1
    epoch: int = -1
    records: int = 0

    def __repr__(self) -> str:
        if self.transactional_id is None:
            return "KafkaTransaction(empty)"
        return (
            f"KafkaTransaction({self.transactional_id!r}, producer_id={self.producer_id}, "
            f"epoch={self.epoch}, records={self.records})"
        )


@dataclass(frozen=True)
class LineageMark:
    """Lineages one subtask owned at a checkpoint: ``{lineage: first seq not pending}``.

    ``writer`` and ``parallelism`` say which subtask wrote it, so a restoring subtask can tell
    whether it has seen every old subtask's mark.
    """

    prefix: str
    writer: int
    parallelism: int
    next_seq: dict[int, int]
