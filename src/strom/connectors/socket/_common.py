"""Argument checks and address formatting shared by the socket source and sink."""

from __future__ import annotations

import math

__all__ = ["check_address", "check_retries", "check_seconds", "endpoint"]


def endpoint(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed so that the port stays readable."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(host: str, port: int) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    # bool is an int subclass; port=True is a bug, not port 1.
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer with 0 < port < 65536, got {port!r}")


def check_seconds(name: str, value: float, *, allow_zero: bool) -> float:
    # "not (...)" so that NaN, which compares false to everything, is rejected as well.
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def check_retries(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"{name} must be an integer >= 0, or -1 to retry forever, got {value!r}")
    return value
