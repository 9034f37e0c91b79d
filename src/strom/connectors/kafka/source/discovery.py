"""Which topics and partitions exist: the subscription and periodic partition discovery.

Every reader discovers on its own — there is no enumerator task — and keeps only what it owns
by the assignment formula, so no coordination is needed (seed §3.12). Discovery runs on a
background thread with its own admin client, because a metadata request can take longer than
``poll`` may block; ``poll`` only picks up the latest answer.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from strom.connectors.kafka.config import without_consumer_settings
from strom.connectors.kafka.errors import KafkaSourceError

__all__ = [
    "PartitionDiscoverer",
    "TopicSubscription",
    "fetch_partition_counts",
    "fetch_subscribed_counts",
]

log = logging.getLogger("strom.connectors.kafka.source")


class TopicSubscription:
    """A fixed list of topics, or a regex every topic name must match in full (as Java's
    ``Pattern.matcher(name).matches()``); internal topics (``__...``) never match a pattern."""

    def __init__(self, topics: Sequence[str] | None, pattern: str | re.Pattern[str] | None):
        self.topics = tuple(topics) if topics is not None else None
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern

    def matches(self, topic: str) -> bool:
        if self.topics is not None:
            return topic in self.topics
        assert self.pattern is not None
        return not topic.startswith("__") and self.pattern.fullmatch(topic) is not None

    def select(self, counts: Mapping[str, int]) -> dict[str, int]:
        return {t: n for t, n in counts.items() if self.matches(t)}

    def describe(self) -> str:
        if self.topics is not None:
            return ",".join(self.topics)
        assert self.pattern is not None
        return f"pattern {self.pattern.pattern!r}"


def fetch_partition_counts(
    client: Any, timeout: float, errors: dict[str, str] | None = None
) -> dict[str, int]:
    """``{topic: partition count}`` from one metadata request. Topics in error are left out
    (and put in ``errors`` with their error, if given)."""
    try:
        meta = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaSourceError(f"cannot fetch topic metadata: {exc}") from exc
    counts: dict[str, int] = {}
    for name, info in meta.topics.items():
        if info.error is None and info.partitions:
            counts[name] = len(info.partitions)
        elif errors is not None:
            errors[name] = str(info.error) if info.error is not None else "no partitions"
    return counts


def fetch_subscribed_counts(
    client: Any, subscription: TopicSubscription, timeout: float
) -> dict[str, int]:
    """Partition counts of the subscribed topics. Every topic of a fixed list must exist: one
    in error (a leader election, a topic still being created) is asked for again until
    ``timeout``; one absent, or still in error then, fails naming it."""
    deadline = time.monotonic() + timeout
    while True:
        errors: dict[str, str] = {}
        counts = subscription.select(fetch_partition_counts(client, timeout, errors))
        missing = [t for t in subscription.topics or () if t not in counts]
        retry = [t for t in missing if t in errors]
        if not retry or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if missing:
        why = ", ".join(f"{t} ({errors.get(t, 'does not exist')})" for t in missing)
        raise KafkaSourceError(f"KafkaSource: topics missing: {why}")
    return counts


class PartitionDiscoverer:
    """Fetches partition counts every ``interval`` seconds on a daemon thread."""

    def __init__(self, properties: Mapping[str, Any], interval: float, timeout: float) -> None:
        self._conf = without_consumer_settings(properties)
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: dict[str, int] | None = None
        self._thread = threading.Thread(
            target=self._run, name="kafka-partition-discovery", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def take(self) -> dict[str, int] | None:
        """The newest answer not taken yet, if any."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def stop(self) -> None:
        # not joined: the thread owns its client and ends at its next wake-up; joining could
        # wait out a metadata timeout inside close()
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        admin: AdminClient | None = None
        while not self._stop.wait(self._interval):
            try:
                if admin is None:
                    admin = AdminClient(self._conf)
                counts = fetch_partition_counts(admin, self._timeout)
            except Exception as exc:  # a dead thread would end discovery silently: go on
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("partition discovery failed (%d in a row): %s", failures, exc)
                continue
            failures = 0
            with self._lock:
                self._latest = counts
