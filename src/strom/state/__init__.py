"""State as user functions see it: descriptors and state interfaces.

This module is the shared vocabulary between user code (``strom.functions``) and the runtime
(``strom.runtime.state``), which implements these interfaces on a backend. Nothing here knows
how state is stored, snapshotted or restored.
"""

from strom.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from strom.state.interfaces import (
    AggregatingState,
    KeyedStateStore,
    ListState,
    MapState,
    OperatorStateStore,
    ReducingState,
    State,
    ValueState,
)
from strom.state.ttl import StateTtlConfig

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "KeyedStateStore",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "OperatorStateStore",
    "ReducingState",
    "ReducingStateDescriptor",
    "State",
    "StateDescriptor",
    "StateTtlConfig",
    "ValueState",
    "ValueStateDescriptor",
]
