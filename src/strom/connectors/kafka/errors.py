"""Errors of the Kafka connector, in one tree under ``strom.errors.ConnectorError``.

::

    StromError
    └── ConnectorError
        └── KafkaError                  anything the Kafka connector raises on purpose
            ├── KafkaSourceError        the consumer side failed (fatal client error, reset
            │                           strategy "error" with no committed offset, ...)
            └── KafkaSinkError          the producer side failed (see the sink package)

Bad records are not errors of this tree: a record that cannot be deserialized raises
``strom.formats.DeserializationError`` with ``origin`` set to ``"topic=t partition=p
offset=o"`` when the bad-record policy is "fail" (the default).

Configuration mistakes (an unknown startup mode, a missing group id) raise
``strom.errors.InvalidJobError`` when the source is built, before anything runs.
"""

from __future__ import annotations

from strom.errors import ConnectorError

__all__ = ["KafkaError", "KafkaSinkError", "KafkaSourceError"]


class KafkaError(ConnectorError):
    """The Kafka connector failed in a way its configuration does not absorb."""


class KafkaSourceError(KafkaError):
    """The Kafka source cannot go on: a fatal client error, or no start offset to read from."""


class KafkaSinkError(KafkaError):
    """The Kafka sink cannot go on (retries exhausted, fenced producer, ...)."""
