"""The keyed window operator: ``window_operator`` picks the pane-based fast path
(``PaneWindowOperator``) where it applies and the general trigger-driven ``WindowOperator``
everywhere else."""

from __future__ import annotations

from typing import Any

from strom.runtime.operators.windows.general import WindowOperator
from strom.runtime.operators.windows.panes import PaneWindowOperator
from strom.windowing import (
    EventTimeTrigger,
    SlidingEventTimeWindows,
    Trigger,
    TumblingEventTimeWindows,
    WindowAssigner,
)

__all__ = ["PaneWindowOperator", "WindowOperator", "window_operator"]


def window_operator(
    name: str,
    key_selector: Any,
    assigner: WindowAssigner,
    kind: str,
    function: Any,
    **options: Any,
) -> WindowOperator:
    """A window operator for ``WindowOperator``'s arguments. Panes serve event-time tumbling
    windows and sliding windows whose slide divides the size, with the default trigger;
    everything else goes through the trigger."""
    trigger: Trigger | None = options.get("trigger")
    default_trigger = trigger is None or type(trigger) is EventTimeTrigger
    aligned = isinstance(assigner, TumblingEventTimeWindows) or (
        isinstance(assigner, SlidingEventTimeWindows) and bool(assigner.pane_size)
    )
    fast = assigner.is_event_time and not assigner.is_merging and default_trigger and aligned
    cls = PaneWindowOperator if fast else WindowOperator
    return cls(name, key_selector, assigner, kind, function, **options)
