"""CollectionSource state: what is left to emit survives restores at any parallelism."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from strom.connectors.base import ReaderContext
from strom.connectors.collection import CollectionSource


def readers(source: CollectionSource[int], parallelism: int, state: list[Any] | None) -> list[Any]:
    out = []
    for i in range(parallelism):
        reader = source.create_reader(ReaderContext(subtask_index=i, parallelism=parallelism))
        reader.open(state)
        out.append(reader)
    return out


@given(
    size=st.integers(0, 200),
    plan=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 40)), min_size=1, max_size=5),
    seed=st.integers(0, 1000),
)
def test_every_element_once_across_rescales(
    size: int, plan: list[tuple[int, int]], seed: int
) -> None:
    rnd = random.Random(seed)
    source = CollectionSource(list(range(size)), parallel=True)
    emitted: list[int] = []
    state: list[Any] | None = None
    for parallelism, polls in [*plan, (3, 10_000)]:  # the last run reads everything left
        rs = readers(source, parallelism, state)
        for r in rs:
            seen: list[int] = []
            for _ in range(polls):
                batch = r.poll(rnd.randint(1, 7))
                if batch is None:
                    break
                seen += batch
            assert seen == sorted(seen)  # each subtask emits in index order
            emitted += seen
        state = [entry for r in rs for entry in r.snapshot_state(1)]
    assert sorted(emitted) == list(range(size))


def test_restores_entries_written_as_strided_positions() -> None:
    """Checkpoints from before the range state: (subtask, parallelism, position)."""
    source = CollectionSource(list(range(10)), parallel=True)
    old = [(0, 2, 2), (1, 2, 1)]  # subtask 0 emitted 0 and 2; subtask 1 emitted 1
    (r,) = readers(source, 1, old)
    assert r.poll(100) == [3, 4, 5, 6, 7, 8, 9]
