"""Kafka connector (seed §3.6–3.17, §5), on ``confluent-kafka``; install ``strom[kafka]``.

Split by role as Flink's connector is: ``source/`` (``KafkaSource``: assignment, splits,
offsets, reader), ``sink/`` (``KafkaSink``: writer, exactly-once transactions, committer),
shared ``config`` (client properties, secret redaction) and ``errors``. Guarantees: the source
is exactly-once with checkpoints; the sink is none / at-least-once / exactly-once as
configured. docs/connectors/kafka.md covers options, guarantees and tests.
"""

from strom.connectors.kafka.config import KafkaProperties
from strom.connectors.kafka.errors import KafkaError, KafkaSinkError, KafkaSourceError
from strom.connectors.kafka.sink import (
    FixedPartitioner,
    KafkaPartitioner,
    KafkaSink,
    KafkaTransaction,
    KeyedSerializationSchema,
    KeyHashPartitioner,
    ProducerRecord,
    ProducerRecordSerializationSchema,
    RoundRobinPartitioner,
    SerializationErrorPolicy,
)
from strom.connectors.kafka.source import (
    BadRecordPolicy,
    DeadLetter,
    DeadLetterRecord,
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    KafkaSource,
    StartupMode,
    StoppingOffsets,
)

__all__ = [
    "BadRecordPolicy",
    "DeadLetter",
    "DeadLetterRecord",
    "FixedPartitioner",
    "KafkaError",
    "KafkaPartitioner",
    "KafkaProperties",
    "KafkaRecord",
    "KafkaRecordDeserializationSchema",
    "KafkaSink",
    "KafkaSinkError",
    "KafkaSource",
    "KafkaSourceError",
    "KafkaTransaction",
    "KeyHashPartitioner",
    "KeyedSerializationSchema",
    "ProducerRecord",
    "ProducerRecordSerializationSchema",
    "RoundRobinPartitioner",
    "SerializationErrorPolicy",
    "StartupMode",
    "StoppingOffsets",
]
