"""State time-to-live: ``StateTtlConfig`` (PyFlink's names), enabled per descriptor.

::

    ttl = (
        StateTtlConfig.new_builder(Time.seconds(60))
        .set_update_type(StateTtlConfig.UpdateType.OnReadAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
        .build()
    )
    descriptor = ValueStateDescriptor("last-seen")
    descriptor.enable_time_to_live(ttl)

An entry expires ``ttl`` milliseconds of *processing time* after it was last written (and, with
``OnReadAndWrite``, last read). List state expires per element and map state per map entry,
as in Flink. Expired entries are never returned with ``NeverReturnExpired`` (the default); they
are removed when they are next accessed and, at the latest, by the next checkpoint, so they
never reach a snapshot. Both state backends behave the same.

strom always cleans up on access and in full snapshots; the builder's other cleanup methods
are accepted for PyFlink compatibility and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from strom.eventtime.duration import Duration, to_millis

__all__ = ["StateTtlConfig"]


@dataclass(frozen=True)
class StateTtlConfig:
    """How long keyed state lives: ``StateTtlConfig(Time.minutes(5))`` or the builder."""

    class UpdateType(Enum):
        Disabled = 0
        """TTL is off: entries never expire."""
        OnCreateAndWrite = 1
        """The expiry clock restarts when the entry is created or written (Flink's default)."""
        OnReadAndWrite = 2
        """... and also when it is read."""

    class StateVisibility(Enum):
        ReturnExpiredIfNotCleanedUp = 0
        """An expired entry not yet removed is still returned (then removed)."""
        NeverReturnExpired = 1
        """Expired entries are invisible (Flink's default)."""

    class TtlTimeCharacteristic(Enum):
        ProcessingTime = 0

    ttl: Duration | int
    """Milliseconds (an ``int``) or a ``Duration`` such as ``Time.seconds(30)``."""
    update_type: UpdateType = UpdateType.OnCreateAndWrite
    state_visibility: StateVisibility = StateVisibility.NeverReturnExpired
    ttl_time_characteristic: TtlTimeCharacteristic = TtlTimeCharacteristic.ProcessingTime

    def __post_init__(self) -> None:
        ms = to_millis(self.ttl, "state TTL")
        if ms <= 0:
            raise ValueError(f"state TTL must be positive, got {ms} ms")
        if not isinstance(self.update_type, StateTtlConfig.UpdateType):
            raise TypeError(
                f"update_type must be a StateTtlConfig.UpdateType, got {self.update_type!r}"
            )
        if not isinstance(self.state_visibility, StateTtlConfig.StateVisibility):
            raise TypeError(
                "state_visibility must be a StateTtlConfig.StateVisibility, "
                f"got {self.state_visibility!r}"
            )

    @staticmethod
    def new_builder(ttl: Duration | int) -> StateTtlConfig.Builder:
        return StateTtlConfig.Builder(ttl)

    @property
    def ttl_ms(self) -> int:
        return to_millis(self.ttl, "state TTL")

    def get_ttl(self) -> Duration:
        return Duration(self.ttl_ms)

    def get_update_type(self) -> StateTtlConfig.UpdateType:
        return self.update_type

    def get_state_visibility(self) -> StateTtlConfig.StateVisibility:
        return self.state_visibility

    def get_ttl_time_characteristic(self) -> StateTtlConfig.TtlTimeCharacteristic:
        return self.ttl_time_characteristic

    def is_enabled(self) -> bool:
        return self.update_type is not StateTtlConfig.UpdateType.Disabled

    class Builder:
        """PyFlink's ``StateTtlConfig.Builder``: setters return the builder, ``build()`` the
        config."""

        def __init__(self, ttl: Duration | int) -> None:
            self._config = StateTtlConfig(ttl)

        def _set(self, **changes: object) -> StateTtlConfig.Builder:
            self._config = replace(self._config, **changes)  # type: ignore[arg-type]
            return self

        def set_ttl(self, ttl: Duration | int) -> StateTtlConfig.Builder:
            return self._set(ttl=ttl)

        def set_update_type(self, update_type: StateTtlConfig.UpdateType) -> StateTtlConfig.Builder:
            return self._set(update_type=update_type)

        def update_ttl_on_create_and_write(self) -> StateTtlConfig.Builder:
            return self._set(update_type=StateTtlConfig.UpdateType.OnCreateAndWrite)

        def update_ttl_on_read_and_write(self) -> StateTtlConfig.Builder:
            return self._set(update_type=StateTtlConfig.UpdateType.OnReadAndWrite)

        def set_state_visibility(
            self, visibility: StateTtlConfig.StateVisibility
        ) -> StateTtlConfig.Builder:
            return self._set(state_visibility=visibility)

        def return_expired_if_not_cleaned_up(self) -> StateTtlConfig.Builder:
            return self._set(
                state_visibility=StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp
            )

        def never_return_expired(self) -> StateTtlConfig.Builder:
            return self._set(state_visibility=StateTtlConfig.StateVisibility.NeverReturnExpired)

        def set_ttl_time_characteristic(
            self, characteristic: StateTtlConfig.TtlTimeCharacteristic
        ) -> StateTtlConfig.Builder:
            return self._set(ttl_time_characteristic=characteristic)

        def use_processing_time(self) -> StateTtlConfig.Builder:
            return self._set(
                ttl_time_characteristic=StateTtlConfig.TtlTimeCharacteristic.ProcessingTime
            )

        # strom always cleans up on access and in full snapshots (see the module docstring)
        def cleanup_full_snapshot(self) -> StateTtlConfig.Builder:
            return self

        def cleanup_incrementally(
            self, cleanup_size: int, run_cleanup_for_every_record: bool
        ) -> StateTtlConfig.Builder:
            return self

        def cleanup_in_rocksdb_compact_filter(
            self, query_time_after_num_entries: int
        ) -> StateTtlConfig.Builder:
            return self

        def disable_cleanup_in_background(self) -> StateTtlConfig.Builder:
            return self

        def build(self) -> StateTtlConfig:
            return self._config
