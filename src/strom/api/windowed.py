"""``WindowedStream``: a keyed stream cut into windows (``keyed.window(assigner)``).

Build-time checks: event-time windows need timestamps from upstream (a watermark strategy on
the source, ``assign_timestamps_and_watermarks``, or a ``SourceFunction`` that emits them);
negative lateness and invalid window sizes are rejected before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strom.errors import InvalidJobError
from strom.eventtime import Duration, to_millis
from strom.functions import AggregateFunction, OutputTag, ReduceFunction
from strom.graph import PhysicalTransformation, SourceTransformation, Transformation
from strom.graph.transformations import per_subtask_copy
from strom.runtime.operators.windows import WindowOperator, window_operator
from strom.windowing import Trigger, WindowAssigner
from strom.windowing.functions import as_process_function

if TYPE_CHECKING:
    from strom.api.datastream import DataStream, KeyedStream


def _has_timestamps(t: Transformation) -> bool:
    """Whether records reaching ``t`` can carry event timestamps."""
    if isinstance(t, PhysicalTransformation) and t.watermark_strategy is not None:
        return True
    if isinstance(t, SourceTransformation):
        return t.timestamped_source
    return bool(t.inputs) and all(_has_timestamps(i) for i in t.inputs)


class WindowedStream:
    def __init__(self, keyed: KeyedStream, assigner: WindowAssigner) -> None:
        if not isinstance(assigner, WindowAssigner):
            raise InvalidJobError(f"window() expects a WindowAssigner, got {assigner!r}")
        if assigner.is_event_time and not _has_timestamps(keyed._transformation):
            raise InvalidJobError(
                f"{assigner.describe()} needs event timestamps, but the input has none: pass a "
                "watermark_strategy to from_source() or call assign_timestamps_and_watermarks()"
            )
        self._keyed = keyed
        self._assigner = assigner
        self._trigger: Trigger | None = None
        self._lateness = 0
        self._late_tag: OutputTag | None = None

    def trigger(self, trigger: Trigger) -> WindowedStream:
        if not isinstance(trigger, Trigger):
            raise InvalidJobError(f"trigger() expects a Trigger, got {trigger!r}")
        if self._assigner.is_merging and not trigger.can_merge():
            raise InvalidJobError(
                f"{type(trigger).__name__} cannot be used with merging (session) windows"
            )
        self._trigger = trigger
        return self

    def allowed_lateness(self, lateness: Duration | int) -> WindowedStream:
        """Keep windows this long after they fired; late records update (re-fire) them."""
        ms = to_millis(lateness, "allowed lateness")
        if ms < 0:
            raise InvalidJobError(f"allowed lateness must be >= 0 ms, got {ms}")
        if not self._assigner.is_event_time and ms:
            raise InvalidJobError("allowed lateness applies to event-time windows only")
        self._lateness = ms
        return self

    def side_output_late_data(self, output_tag: OutputTag) -> WindowedStream:
        """Records too late for their window go to this side output instead of being
        dropped (they are counted in the ``num_late_records_dropped`` metric otherwise)."""
        self._late_tag = output_tag
        return self

    def _build(self, name: str, kind: str, fn: Any, window_function: Any = None) -> DataStream:
        from strom.api.datastream import DataStream

        keyed = self._keyed
        key, assigner, trigger = keyed._key_selector, self._assigner, self._trigger
        lateness, tag = self._lateness, self._late_tag
        wf = as_process_function(window_function) if window_function is not None else None

        def factory(n: str) -> WindowOperator:
            return window_operator(
                n,
                key,
                assigner,
                kind,
                per_subtask_copy(fn),
                trigger=trigger,
                window_function=per_subtask_copy(wf),
                allowed_lateness=lateness,
                late_tag=tag.tag_id if tag is not None else None,
            )

        t = keyed._apply(f"Window({assigner.describe()}, {name})", factory, keyed=True)
        return DataStream(keyed._env, t)

    def reduce(
        self, reduce_function: ReduceFunction[Any] | Any, window_function: Any = None
    ) -> DataStream:
        """Incremental: the window holds one reduced value per key."""
        if not (callable(reduce_function) or hasattr(reduce_function, "reduce")):
            raise InvalidJobError(
                f"reduce expects a ReduceFunction or callable, got {reduce_function!r}"
            )
        return self._build("Reduce", "reduce", reduce_function, window_function)

    def aggregate(
        self, aggregate_function: AggregateFunction[Any, Any, Any], window_function: Any = None
    ) -> DataStream:
        """Incremental: the window holds the accumulator, never the elements; with a
        ``window_function`` its result is passed on with the window's metadata."""
        if not isinstance(aggregate_function, AggregateFunction):
            raise InvalidJobError(
                f"aggregate expects an AggregateFunction, got {aggregate_function!r}"
            )
        return self._build("Aggregate", "aggregate", aggregate_function, window_function)

    def process(self, process_window_function: Any) -> DataStream:
        """The window's full contents with its metadata (the window keeps every element)."""
        return self._build("Process", "process", None, process_window_function)

    def apply(self, window_function: Any) -> DataStream:
        """Legacy ``WindowFunction.apply(key, window, inputs)`` (or a callable)."""
        return self._build("Apply", "process", None, window_function)
