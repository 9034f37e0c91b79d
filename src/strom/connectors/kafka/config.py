"""Client properties shared by the Kafka source and sink: merging, validation, redaction.

Properties are librdkafka's (``confluent-kafka``) and pass through unchanged, SASL and TLS
included. Secrets (passwords, keys, OAuth secrets, JAAS configs) must never reach a log line,
an exception message or a ``repr``: :class:`KafkaProperties` is the one place that holds them,
and its ``repr`` and :meth:`KafkaProperties.redacted` show ``"***"`` instead of their values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from strom.errors import InvalidJobError

__all__ = [
    "REDACTED",
    "KafkaProperties",
    "is_secret",
    "normalize_reset_strategy",
    "without_consumer_settings",
]

REDACTED = "***"

# Substrings of property names whose values are secret. Matching on substrings errs on the side
# of hiding: a hidden harmless value costs nothing, a leaked password costs a rotation.
_SECRET_MARKERS = (
    "password",
    "secret",
    "jaas",
    "key.pem",
    "ssl_key",
    "oauthbearer.config",
    "token",
    "credential",
    "private",
)


def is_secret(name: str) -> bool:
    """Whether the value of property ``name`` must be hidden from logs and reprs."""
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


class KafkaProperties(Mapping[str, Any]):
    """Immutable client properties whose ``repr`` never shows a secret value.

    Keys use Kafka's dotted names; ``bootstrap_servers`` given separately wins only when the
    properties do not name other servers (a contradiction is a configuration error).
    """

    __slots__ = ("_data",)

    def __init__(
        self, properties: Mapping[str, Any] | None = None, *, bootstrap_servers: str | None = None
    ) -> None:
        data: dict[str, Any] = {}
        for key, value in (properties or {}).items():
            if not isinstance(key, str):
                raise InvalidJobError(f"Kafka property names are strings, got {key!r}")
            data[key] = value
        if bootstrap_servers is not None:
            given = data.get("bootstrap.servers")
            if given is not None and given != bootstrap_servers:
                raise InvalidJobError(
                    f"bootstrap_servers={bootstrap_servers!r} contradicts the property "
                    f"bootstrap.servers={given!r}; give it once"
                )
            data["bootstrap.servers"] = bootstrap_servers
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def redacted(self) -> dict[str, Any]:
        """A copy safe to log: secret values replaced by ``"***"``."""
        return {k: (REDACTED if is_secret(k) else v) for k, v in self._data.items()}

    def scrub(self, text: str) -> str:
        """``text`` (a client's error message, say) with every secret value in it replaced by
        ``"***"``, for the rare client error that echoes a property's value."""
        for key, value in self._data.items():
            if is_secret(key) and isinstance(value, str) and len(value) >= 3:
                text = text.replace(value, REDACTED)
        return text

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A fresh dict for a librdkafka client: these properties, then ``overrides``
        (underscores in override names stand for dots)."""
        conf = dict(self._data)
        conf.update({k.replace("_", "."): v for k, v in overrides.items()})
        return conf

    def with_defaults(self, **defaults: Any) -> KafkaProperties:
        """These properties plus ``defaults`` for names not set (underscores for dots)."""
        merged = {k.replace("_", "."): v for k, v in defaults.items()}
        merged.update(self._data)
        return KafkaProperties(merged)

    def __repr__(self) -> str:
        return f"KafkaProperties({self.redacted()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KafkaProperties):
            return self._data == other._data
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._data.items())))

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self._data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = state["data"]


_RESET_ALIASES = {
    "earliest": "earliest",
    "smallest": "earliest",
    "beginning": "earliest",
    "latest": "latest",
    "largest": "latest",
    "end": "latest",
    "error": "error",
    "none": "error",
}


def normalize_reset_strategy(value: object) -> str:
    """``auto.offset.reset`` in Kafka's or librdkafka's spelling → earliest / latest / error."""
    strategy = _RESET_ALIASES.get(str(value).strip().lower())
    if strategy is None:
        raise InvalidJobError(f"auto.offset.reset={value!r} is not one of {sorted(_RESET_ALIASES)}")
    return strategy


# Consumer-only settings: producers and admin clients built from a source's properties (dead
# letters, discovery) drop them, or librdkafka warns about each on every client it creates.
_CONSUMER_ONLY = (
    "group.",
    "auto.",
    "enable.auto.",
    "enable.partition.eof",
    "isolation.level",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "fetch.",
    "queued.",
    "check.crcs",
    "client.rack",
    "allow.auto.create.topics",
)


def without_consumer_settings(properties: Mapping[str, Any]) -> dict[str, Any]:
    """``properties`` minus consumer-only settings: connection, security and client-wide
    settings stay, for a producer or admin client on the same cluster."""
    return {
        k: v
        for k, v in properties.items()
        if not any(k == p or k.startswith(p) for p in _CONSUMER_ONLY)
    }
