"""Choosing a keyed state backend by name: what ``env.set_state_backend`` configures.

``"heap"`` (default) keeps state in dicts; ``"disk"`` keeps it in an LMDB store behind a cache
(``strom.runtime.state.disk``; needs the ``lmdb`` package: ``pip install 'strom[state-disk]'``).
Both have the same semantics and snapshot format, so switching backends between runs of a job
keeps its checkpoints valid.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from strom.runtime.state.heap import HeapKeyedStateBackend
from strom.runtime.state.serializer import StateSerializer

STATE_BACKENDS = ("heap", "disk")


def check_state_backend(name: str) -> None:
    """Raise ``ValueError`` with a useful message if backend ``name`` cannot be used here."""
    if name not in STATE_BACKENDS:
        choices = ", ".join(repr(n) for n in STATE_BACKENDS)
        raise ValueError(f"unknown state backend {name!r}; choose one of {choices}")
    if name == "disk" and importlib.util.find_spec("lmdb") is None:
        raise ValueError(
            "the disk state backend needs the 'lmdb' package: pip install 'strom[state-disk]'"
        )


def create_keyed_backend(
    name: str,
    max_parallelism: int,
    key_groups: range,
    *,
    clock: Callable[[], int] | None = None,
    directory: str | os.PathLike[str] | None = None,
    cache_size: int | None = None,
    serializer: StateSerializer | None = None,
    label: str = "keyed",
) -> HeapKeyedStateBackend:
    """The keyed backend of one operator subtask; ``label`` names its files (disk)."""
    check_state_backend(name)
    if name == "heap":
        return HeapKeyedStateBackend(max_parallelism, key_groups, clock=clock)
    from strom.runtime.state.disk import DEFAULT_CACHE_SIZE, DiskKeyedStateBackend

    return DiskKeyedStateBackend(
        max_parallelism,
        key_groups,
        clock=clock,
        directory=directory,
        cache_size=cache_size if cache_size is not None else DEFAULT_CACHE_SIZE,
        serializer=serializer,
        label=label,
    )
