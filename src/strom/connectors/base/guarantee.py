"""Delivery guarantees a connector can declare (seed §1.4, §2.2)."""

from __future__ import annotations

from enum import Enum


class DeliveryGuarantee(Enum):
    """What a connector promises about each record after failures and restarts.

    The guarantee of a whole job is the weakest of its source's, its sinks' and the checkpointing
    mode's. Without checkpointing, nothing stronger than at-most-once holds across a failure.
    """

    EXACTLY_ONCE = "exactly_once"
    """Each record affects the result exactly once (replayable source, 2PC or idempotent sink)."""
    AT_LEAST_ONCE = "at_least_once"
    """No record is lost; after a failure some may be seen twice."""
    AT_MOST_ONCE = "at_most_once"
    """No record is duplicated; after a failure some may be lost."""
    NONE = "none"
    """No promise (e.g. a sink that neither flushes on checkpoints nor retries)."""

    @classmethod
    def parse(cls, value: DeliveryGuarantee | str) -> DeliveryGuarantee:
        if isinstance(value, DeliveryGuarantee):
            return value
        try:
            return cls(str(value).lower().replace("-", "_"))
        except ValueError:
            allowed = ", ".join(g.value for g in cls)
            raise ValueError(
                f"unknown delivery guarantee {value!r}; use one of {allowed}"
            ) from None
