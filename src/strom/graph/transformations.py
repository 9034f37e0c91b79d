"""Transformations: the pure-data description of a job as the API builds it.

A physical transformation becomes an operator; virtual ones (partitioning, union) only shape
the edges between operators.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strom.runtime.operators.base import StreamOperator
from strom.runtime.partitioners import Partitioner

log = logging.getLogger("strom.graph")


@dataclass(eq=False)
class Transformation:
    id: int
    name: str
    inputs: list[Transformation] = field(default_factory=list)
    parallelism: int | None = None
    """None: the environment's default parallelism."""
    max_parallelism: int | None = None
    uid: str | None = None
    chaining: bool = True

    @property
    def is_virtual(self) -> bool:
        return False


@dataclass(eq=False)
class PhysicalTransformation(Transformation):
    """Becomes an operator; ``factory`` builds a fresh operator for every subtask."""

    factory: Callable[[str], StreamOperator] | None = None
    """Builds a fresh operator (given its name) for every subtask."""
    keyed: bool = False
    two_inputs: bool = False
    """A two-input operator (connect): its inputs are numbered by position."""
    watermark_strategy: Any = None
    """Set on transformations that assign timestamps (sources, assign_timestamps_...)."""
    parallelism_limit: int | None = None
    """Most subtasks the operator supports (1 for non-parallel sources and sinks)."""


@dataclass(eq=False)
class SourceTransformation(PhysicalTransformation):
    bounded: bool = True
    timestamped_source: bool = False
    """The source can emit event timestamps itself (a SourceFunction may)."""


@dataclass(eq=False)
class PartitionTransformation(Transformation):
    """Routes its single input through a partitioner (``key_by``, ``rebalance``, ...)."""

    partitioner: Callable[[int], Partitioner] | None = None
    """Called with the max parallelism, returns a fresh partitioner for one sender subtask."""
    partitioner_name: str = "forward"

    @property
    def is_virtual(self) -> bool:
        return True


@dataclass(eq=False)
class SideOutputTransformation(Transformation):
    """Reads side output ``tag_id`` of its single (physical) input."""

    tag_id: str = ""

    @property
    def is_virtual(self) -> bool:
        return True


@dataclass(eq=False)
class UnionTransformation(Transformation):
    @property
    def is_virtual(self) -> bool:
        return True


def per_subtask_copy(fn: Any) -> Any:
    """A subtask's own copy of a user function object (Flink serializes one per subtask).

    Plain functions and lambdas are shared (they are immutable); objects are deep-copied so
    fields set in ``open`` or while processing stay per subtask. An object that cannot be
    copied is shared, with a warning.
    """
    if fn is None or (callable(fn) and not hasattr(fn, "__dict__")) or isinstance(fn, type):
        return fn
    if getattr(fn, "__code__", None) is not None:  # function or lambda
        return fn
    try:
        return copy.deepcopy(fn)
    except Exception as e:
        log.warning(
            "function %r cannot be copied per subtask (%s); all subtasks share one instance",
            fn,
            e,
        )
        return fn
