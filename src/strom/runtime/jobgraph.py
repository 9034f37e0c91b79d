"""The job graph: what ``strom.graph`` produces and the executor runs. Pure data.

A ``JobVertex`` is a chain of operators that run in one task per subtask: a tree of operators
rooted at the head, linked by forward ``chain_edges``. ``JobEdge``s link an operator of one
vertex to the head of another through a partitioner (a channel hop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strom.runtime.checkpoint.config import CheckpointConfig
from strom.runtime.operators.base import StreamOperator
from strom.runtime.partitioners import Partitioner
from strom.runtime.restart import RestartStrategy
from strom.runtime.state.serializer import StateSerializer


@dataclass
class OperatorSpec:
    name: str
    uid: str
    factory: Callable[[], StreamOperator]
    keyed: bool = False
    """The operator reads keyed state: its subtask gets a keyed state backend."""


@dataclass
class JobEdge:
    source_vertex: int
    source_operator: int
    """Index of the emitting operator within the source vertex's chain."""
    target_vertex: int
    partitioner: Callable[[], Partitioner]
    partitioner_name: str
    target_input: int = 0
    tag: str | None = None
    """The side output this edge carries (None: the main output)."""

    @property
    def is_forward(self) -> bool:
        return self.partitioner_name == "forward"


@dataclass
class JobVertex:
    id: int
    name: str
    parallelism: int
    max_parallelism: int
    operators: list[OperatorSpec]
    chain_edges: list[tuple[int, int]] = field(default_factory=list)
    chain_tags: dict[tuple[int, int], str] = field(default_factory=dict)
    """Chain edges that carry a side output (by tag id) instead of the main output."""
    is_source: bool = False

    def children(self, index: int) -> list[tuple[int, str | None]]:
        """``(child index, side-output tag or None)`` of operator ``index`` in this chain."""
        return [(c, self.chain_tags.get((p, c))) for p, c in self.chain_edges if p == index]


@dataclass
class JobConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    restart_strategy: RestartStrategy | None = None
    """None: Flink's default — fixed delay (1 s, unlimited) with checkpointing, else none."""
    restore_path: str | None = None
    """A checkpoint/savepoint directory (or ``latest``) to start from."""
    allow_non_restored_state: bool = False
    batch_size: int = 1024
    channel_capacity: int = 8
    flush_interval: float = 0.05
    auto_watermark_interval_ms: int = 200
    processing_time: Callable[[], int] | None = None
    job_parameters: dict[str, str] = field(default_factory=dict)
    state_backend: str = "heap"
    """Keyed state backend: ``"heap"`` or ``"disk"`` (``strom.runtime.state.STATE_BACKENDS``)."""
    state_dir: str | None = None
    """Where the disk backend puts its per-subtask directories (default: working directory)."""
    state_cache_size: int | None = None
    """Entries per state the disk backend caches in memory (None: its default)."""
    state_serializer: StateSerializer | None = None
    """How the disk backend serializes values (None: pickle protocol 5)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobGraph:
    job_name: str
    vertices: list[JobVertex]
    edges: list[JobEdge]
    config: JobConfig = field(default_factory=JobConfig)

    def inputs_of(self, vertex_id: int) -> list[JobEdge]:
        return [e for e in self.edges if e.target_vertex == vertex_id]

    def outputs_of(self, vertex_id: int, operator_index: int) -> list[JobEdge]:
        return [
            e
            for e in self.edges
            if e.source_vertex == vertex_id and e.source_operator == operator_index
        ]

    def vertex(self, vertex_id: int) -> JobVertex:
        for v in self.vertices:
            if v.id == vertex_id:
                return v
        raise KeyError(vertex_id)

    def describe(self) -> str:
        """A readable plan: one line per task with its chained operators and out-edges."""
        lines = [f"Job {self.job_name!r}"]
        for v in self.vertices:
            ops = " -> ".join(o.name for o in v.operators)
            lines.append(f"  [{v.id}] x{v.parallelism}: {ops}")
            for e in self.edges:
                if e.source_vertex == v.id:
                    lines.append(f"      --{e.partitioner_name}--> [{e.target_vertex}]")
        return "\n".join(lines)
