"""The rolling file sink (``FileSink``): part files in bucket directories on a local disk,
HDFS, S3 or any fsspec filesystem. Guarantee: exactly-once with checkpointing.

Part files go from in-progress (hidden, ``.part-0-3.inprogress.<uuid>``) to pending (rolled,
durable, still hidden) to finished (``part-0-3``) — finished only when the checkpoint that
covers their records is complete. Commits are renames on filesystems that have them and
completed multipart uploads on S3. See ``docs/connectors/filesystem.md``.
"""

from strom.connectors.filesystem.buckets import (
    BasePathBucketAssigner,
    BucketAssigner,
    BucketContext,
    DateTimeBucketAssigner,
)
from strom.connectors.filesystem.policies import (
    DefaultRollingPolicy,
    OnCheckpointRollingPolicy,
    OutputFileConfig,
    PartFileInfo,
    RollingPolicy,
)
from strom.connectors.filesystem.sink import FileSink, FileSinkWriter

__all__ = [
    "BasePathBucketAssigner",
    "BucketAssigner",
    "BucketContext",
    "DateTimeBucketAssigner",
    "DefaultRollingPolicy",
    "FileSink",
    "FileSinkWriter",
    "OnCheckpointRollingPolicy",
    "OutputFileConfig",
    "PartFileInfo",
    "RollingPolicy",
]
