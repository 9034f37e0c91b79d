"""State descriptors: the name (and, where needed, the function) that identifies a state.

As in Flink, a descriptor is how a function asks the runtime for a state; the same name always
returns the same state. Type information is optional: the default serializer handles any
picklable Python value. ``enable_time_to_live(StateTtlConfig)`` makes keyed state expire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strom.state.ttl import StateTtlConfig

if TYPE_CHECKING:
    from strom.functions import AggregateFunction, ReduceFunction

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


@dataclass(frozen=True)
class StateDescriptor:
    """Base of all descriptors: a non-empty name, unique per operator."""

    name: str
    type_info: Any = field(default=None, compare=False)
    ttl_config: StateTtlConfig | None = field(default=None, compare=False, kw_only=True)
    """Set by ``enable_time_to_live``; keyword-only so positional arguments keep their order."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"state name must be a non-empty string, got {self.name!r}")

    def enable_time_to_live(self, ttl_config: StateTtlConfig) -> None:
        """Let entries of this (keyed) state expire, as configured (PyFlink's method).

        Descriptors are otherwise immutable; like PyFlink's, this one call sets the TTL in place
        and must come before the descriptor is used to get a state.
        """
        if not isinstance(ttl_config, StateTtlConfig):
            raise TypeError(f"enable_time_to_live expects a StateTtlConfig, got {ttl_config!r}")
        object.__setattr__(self, "ttl_config", ttl_config)  # frozen dataclass: see docstring

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("StateDescriptor").lower()


@dataclass(frozen=True)
class ValueStateDescriptor(StateDescriptor, Generic[T]):
    """One value per key."""


@dataclass(frozen=True)
class ListStateDescriptor(StateDescriptor, Generic[T]):
    """A list per key (keyed state) or per operator subtask (operator state)."""


@dataclass(frozen=True)
class MapStateDescriptor(StateDescriptor, Generic[K, V]):
    """A map per key; also the descriptor of broadcast state."""


@dataclass(frozen=True)
class ReducingStateDescriptor(StateDescriptor, Generic[T]):
    """One value per key, folded with ``reduce_function`` on every ``add``."""

    reduce_function: ReduceFunction[T] | Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reduce_function is None:
            raise ValueError(f"ReducingStateDescriptor {self.name!r} needs a reduce_function")


@dataclass(frozen=True)
class AggregatingStateDescriptor(StateDescriptor, Generic[IN, ACC, OUT]):
    """An accumulator per key, maintained by an ``AggregateFunction``."""

    agg_function: AggregateFunction[IN, ACC, OUT] | Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.agg_function is None:
            raise ValueError(f"AggregatingStateDescriptor {self.name!r} needs an agg_function")
