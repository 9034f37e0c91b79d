"""Durations in milliseconds, with PyFlink's constructors (``Duration.of_seconds(5)``,
``Time.minutes(1)``). Everywhere strom takes a duration, a plain ``int`` of milliseconds works."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Duration:
    millis: int

    @staticmethod
    def of_millis(ms: int) -> Duration:
        return Duration(int(ms))

    @staticmethod
    def of_seconds(s: float) -> Duration:
        return Duration(int(s * 1000))

    @staticmethod
    def of_minutes(m: float) -> Duration:
        return Duration(int(m * 60_000))

    @staticmethod
    def of_hours(h: float) -> Duration:
        return Duration(int(h * 3_600_000))

    @staticmethod
    def of_days(d: float) -> Duration:
        return Duration(int(d * 86_400_000))

    def to_milliseconds(self) -> int:
        return self.millis


class Time:
    """PyFlink's ``Time`` helpers for window sizes; they return ``Duration``s."""

    milliseconds = staticmethod(Duration.of_millis)
    seconds = staticmethod(Duration.of_seconds)
    minutes = staticmethod(Duration.of_minutes)
    hours = staticmethod(Duration.of_hours)
    days = staticmethod(Duration.of_days)


def to_millis(value: Duration | int, what: str = "duration") -> int:
    if isinstance(value, Duration):
        return value.millis
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a Duration or an int of milliseconds, got {value!r}")
    return value
