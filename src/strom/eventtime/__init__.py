"""Event time: durations, timestamp assigners and watermark strategies (PyFlink's names).

A ``WatermarkStrategy`` says where a record's event timestamp comes from and how watermarks
are generated; it is applied at the source (``env.from_source(source, watermark_strategy)``,
one generator per split, the minimum over active splits emitted) or anywhere with
``stream.assign_timestamps_and_watermarks(strategy)``.
"""

from strom.eventtime.duration import Duration, Time, to_millis
from strom.eventtime.watermarks import (
    BoundedOutOfOrdernessWatermarks,
    MonotonousTimestampsWatermarks,
    NoWatermarksGenerator,
    TimestampAssigner,
    WatermarkGenerator,
    WatermarkOutput,
    WatermarkStrategy,
)

__all__ = [
    "BoundedOutOfOrdernessWatermarks",
    "Duration",
    "MonotonousTimestampsWatermarks",
    "NoWatermarksGenerator",
    "Time",
    "TimestampAssigner",
    "WatermarkGenerator",
    "WatermarkOutput",
    "WatermarkStrategy",
    "to_millis",
]
