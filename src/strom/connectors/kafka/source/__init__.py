"""The Kafka source, split by role as Flink's ``KafkaSource`` is.

- ``source``: :class:`KafkaSource`, the serializable description and its options;
- ``assignment``: which subtask reads which partition (Flink's formula);
- ``split``: a partition as a split and its checkpointed ``(topic, partition, offset)`` form;
- ``offsets``: start positions (:class:`StartupMode`) and bounded-mode stops
  (:class:`StoppingOffsets`), resolved against the broker through ``lookup`` (committed
  offsets, offsets by timestamp, and partition ends as a fetch reports them);
- ``discovery``: the topic subscription and periodic partition discovery;
- ``records`` / ``decoder``: what deserialization sees and the batch decoding hot path;
- ``badrecords``: the bad-record policy (fail / skip / dead letter);
- ``reader``: the per-subtask reader (consume, state), with ``commits`` (offsets committed
  back), ``lag`` (lag metrics) and ``client`` (client configuration, errors, bounded close).
"""

from strom.connectors.kafka.source.assignment import java_string_hashcode, split_owner
from strom.connectors.kafka.source.badrecords import BadRecordPolicy, DeadLetter, DeadLetterRecord
from strom.connectors.kafka.source.offsets import StartupMode, StoppingOffsets
from strom.connectors.kafka.source.records import (
    KafkaRecord,
    KafkaRecordDeserializationSchema,
    RecordDeserializer,
)
from strom.connectors.kafka.source.source import KafkaSource
from strom.connectors.kafka.source.split import KafkaPartitionSplit

__all__ = [
    "BadRecordPolicy",
    "DeadLetter",
    "DeadLetterRecord",
    "KafkaPartitionSplit",
    "KafkaRecord",
    "KafkaRecordDeserializationSchema",
    "KafkaSource",
    "RecordDeserializer",
    "StartupMode",
    "StoppingOffsets",
    "java_string_hashcode",
    "split_owner",
]
