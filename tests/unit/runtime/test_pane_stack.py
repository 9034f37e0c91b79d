"""``PaneStack``: sliding aggregation over panes against merging every pane from scratch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from strom.runtime.operators.windows.stack import MISSING, PaneStack


def concat_in_place(a: list[int], b: list[int]) -> list[int]:
    """Order-sensitive and modifies its first argument, as merge functions may."""
    a.extend(b)
    return a


@given(
    panes=st.dictionaries(st.integers(0, 40), st.integers(0, 99), max_size=30),
    width=st.integers(1, 8),
    starts=st.lists(st.integers(0, 45), min_size=1, max_size=30),
)
def test_windows_slide_over_panes_like_a_fresh_merge(
    panes: dict[int, int], width: int, starts: list[int]
) -> None:
    state = {p: [v] for p, v in panes.items()}
    frozen = {p: list(acc) for p, acc in state.items()}
    stack = PaneStack(0, concat_in_place, list)
    for start in sorted(starts):  # windows [start, start + width) in order, with gaps
        if not start <= stack.next_pane <= start + width:
            stack = PaneStack(start, concat_in_place, list)  # as the operator rebuilds
        stack.evict_before(start)
        for p in range(stack.next_pane, start + width):
            if p in state:
                stack.push(p, state[p])
        stack.next_pane = start + width
        want = [v for p in range(start, start + width) if p in state for v in state[p]]
        got = stack.result()
        assert (got if got is not MISSING else []) == want
        if got is not MISSING:
            got.append(-1)  # what was emitted is not shared with the stack
    assert state == frozen  # pane accumulators in state were never modified
