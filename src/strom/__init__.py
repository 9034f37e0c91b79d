"""strom: a Python DataStream engine with Flink-grade connectors.

Start with ``StreamExecutionEnvironment.get_execution_environment()``; connectors live in
``strom.connectors.<system>``, formats in ``strom.formats``, the test harness in
``strom.testing``. ``docs/ARCHITECTURE.md`` maps every concept to its module.
"""

from importlib.metadata import PackageNotFoundError, version

from strom.api import (
    CloseableIterator,
    DataStream,
    DataStreamSink,
    KeyedStream,
    StreamExecutionEnvironment,
)
from strom.connectors.base import DeliveryGuarantee
from strom.errors import (
    ConnectorError,
    InvalidJobError,
    JobCancelledError,
    JobExecutionError,
    StateError,
    StromError,
)
from strom.runtime.job import JobClient, JobExecutionResult, JobStatus

try:
    __version__ = version("strom")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "CloseableIterator",
    "ConnectorError",
    "DataStream",
    "DataStreamSink",
    "DeliveryGuarantee",
    "InvalidJobError",
    "JobCancelledError",
    "JobClient",
    "JobExecutionError",
    "JobExecutionResult",
    "JobStatus",
    "KeyedStream",
    "StateError",
    "StreamExecutionEnvironment",
    "StromError",
    "__version__",
]
