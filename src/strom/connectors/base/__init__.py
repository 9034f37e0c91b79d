"""The connector contract: what a connector implements and what it may use.

Connectors reach the engine only through this package: ``Source``/``SourceReader`` and
``Sink``/``SinkWriter`` (pull-based, batch-oriented, the runtime owns the loop), the
``DeliveryGuarantee`` every connector declares, and shared plumbing (retry and backoff).
"""

from strom.connectors.base.guarantee import DeliveryGuarantee
from strom.connectors.base.sink import Sink, SinkWriter, WriterContext
from strom.connectors.base.source import Batch, ReaderContext, Source, SourceReader
from strom.connectors.base.two_phase import TwoPhaseCommitSinkWriter

__all__ = [
    "Batch",
    "DeliveryGuarantee",
    "ReaderContext",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "TwoPhaseCommitSinkWriter",
    "WriterContext",
]
