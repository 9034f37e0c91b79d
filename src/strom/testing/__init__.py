"""``strom.testing``: public tools for testing jobs and custom sources and sinks.

- Scripted input and collected output: ``TestingSource`` (with ``EOF``/``ABORT``/``PAUSE``
  markers), ``TestingSink``, ``CollectingSinkFunction``; ``run_to_completion`` runs a bounded
  job and returns what it produced.
- Time and failures on cue: ``ManualClock`` (processing time), ``FailOnce``/``fail_once_at``
  (crash once at a given record, raising ``InjectedFailure``).
- Harnesses that drive one subtask of a function or connector without a job:
  ``SourceFunctionHarness``, ``SinkFunctionHarness``, ``SourceReaderHarness``,
  ``SinkWriterHarness`` — snapshot, cancel, and restore (also at another parallelism).
- Misbehaving networks over real sockets (``strom.testing.network``): ``FaultProxy``,
  ``LineServer``, ``CollectingServer``, ``free_port``.

``docs/testing.md`` shows each in use.
"""

from strom.testing.clock import ManualClock
from strom.testing.conformance import CheckNotApplicable, conformance_tests
from strom.testing.conformance_sinks import SinkConformance
from strom.testing.conformance_sources import SourceConformance
from strom.testing.failures import FailOnce, InjectedFailure, fail_once_at
from strom.testing.harness import (
    SinkFunctionHarness,
    SinkWriterHarness,
    SourceFunctionHarness,
    SourceReaderHarness,
    run_to_completion,
)
from strom.testing.network import CollectingServer, FaultProxy, LineServer, free_port
from strom.testing.sinks import CollectingSinkFunction, TestingSink
from strom.testing.sources import TestingSource

__all__ = [
    "CheckNotApplicable",
    "CollectingServer",
    "CollectingSinkFunction",
    "FailOnce",
    "FaultProxy",
    "InjectedFailure",
    "LineServer",
    "ManualClock",
    "SinkConformance",
    "SinkFunctionHarness",
    "SinkWriterHarness",
    "SourceConformance",
    "SourceFunctionHarness",
    "SourceReaderHarness",
    "TestingSink",
    "TestingSource",
    "conformance_tests",
    "fail_once_at",
    "free_port",
    "run_to_completion",
]
