"""The Kafka sink (seed 3.14–3.17, §5): elements to Kafka records with the guarantee none,
at-least-once or exactly-once.

Split by role: ``sink.py`` (options), ``records.py`` (elements → records, bad-record policy),
``partitioners.py``, ``producer.py`` (batch produce, delivery tracking), ``writer.py`` (none /
at-least-once), ``exactly_once.py`` (transactions tied to checkpoints), ``transactional.py``
(one producer per transactional id, prepared in the background), ``transactions.py`` (what
checkpoints keep), ``committer.py`` (committing by id and aborting lingering transactions on
recovery), ``protocol.py`` and ``security.py`` (the recovery client's Kafka requests, TLS and
SASL). ``docs/connectors/kafka.md`` ("Sink") is the user guide.
"""

from strom.connectors.kafka.sink.partitioners import (
    FixedPartitioner,
    KafkaPartitioner,
    KeyHashPartitioner,
    RoundRobinPartitioner,
)
from strom.connectors.kafka.sink.records import (
    KeyedSerializationSchema,
    ProducerRecord,
    ProducerRecordSerializationSchema,
    SerializationErrorPolicy,
)
from strom.connectors.kafka.sink.sink import KafkaSink
from strom.connectors.kafka.sink.transactions import KafkaTransaction

__all__ = [
    "FixedPartitioner",
    "KafkaPartitioner",
    "KafkaSink",
    "KafkaTransaction",
    "KeyHashPartitioner",
    "KeyedSerializationSchema",
    "ProducerRecord",
    "ProducerRecordSerializationSchema",
    "RoundRobinPartitioner",
    "SerializationErrorPolicy",
]
