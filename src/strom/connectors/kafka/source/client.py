"""The reader's dealings with the librdkafka client itself: configuration, errors, closing.

Transient errors (broker down, leader change) are retried by librdkafka; the reader logs each
error code at most every 30 s. A *fatal* error ends the consumer: the next ``poll`` raises.
Callbacks run inside ``consume``/``close`` on the reader's own thread.

Closing a consumer can wait on the broker — a final offset commit, a coordinator that does not
answer — for longer than a task should hang at its end, so :func:`close_consumer` gives it a
bounded time and then goes on without it (the client is freed when its close returns).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka import KafkaError as ClientError

from strom.connectors.kafka.config import KafkaProperties
from strom.connectors.kafka.errors import KafkaSourceError

__all__ = ["ClientErrors", "client_config", "close_consumer"]

log = logging.getLogger("strom.connectors.kafka.source")

_WARN_EVERY = 30.0  # seconds between repeated warnings about the same client error


def client_config(
    properties: KafkaProperties, group_id: str, reset_strategy: str, client_id: str
) -> dict[str, Any]:
    """What every consumer of a reader is configured with: the source's properties, the group,
    ``auto.offset.reset`` normalized (librdkafka rejects Kafka's spelling ``none``), a
    ``client.id`` and Python logging for librdkafka's log lines, unless the properties set
    those two."""
    conf = properties.client_config()
    conf["group.id"] = group_id
    conf["auto.offset.reset"] = reset_strategy
    conf.setdefault("client.id", client_id)
    conf.setdefault("logger", logging.getLogger("strom.connectors.kafka.librdkafka"))
    return conf


class ClientErrors:
    """Rate-limited warnings for transient client errors; remembers the first fatal one."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.fatal: ClientError | None = None
        self._warned: dict[tuple[int, str], float] = {}

    def on_error(self, err: ClientError, where: str = "") -> None:
        """The consumer's ``error_cb``; also called for partition errors (``where`` names the
        partition)."""
        if err.fatal():
            if self.fatal is None:
                self.fatal = err
            return
        now = time.monotonic()
        key = (err.code(), where)
        if now - self._warned.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[key] = now
            at = f" ({where})" if where else ""
            log.warning("%s: Kafka client error%s: %s", self._name, at, err)

    def raise_fatal(self) -> None:
        if self.fatal is not None:
            raise KafkaSourceError(f"{self._name}: Kafka consumer failed: {self.fatal}")


def close_consumer(consumer: Consumer, timeout: float, name: str) -> bool:
    """Close ``consumer``, waiting at most ``timeout`` seconds; False if it did not finish
    (it then finishes, or not, on a daemon thread, and a warning says so)."""
    done = threading.Event()

    def close() -> None:
        try:
            consumer.close()
        except Exception as exc:  # closing is best effort: the task is ending anyway
            log.debug("%s: closing the consumer: %s", name, exc)
        finally:
            done.set()

    threading.Thread(target=close, name=f"{name}-consumer-close", daemon=True).start()
    if done.wait(timeout):
        return True
    log.warning(
        "%s: closing the Kafka consumer took longer than %g s; going on without it",
        name,
        timeout,
    )
    return False
