"""Harnesses that drive one subtask of a user's source or sink directly, without a job.

A job test shows *that* something went wrong; a harness lets a test stand exactly where a
checkpoint, a cancel or a restore happens and look. Each harness runs the function (or
connector) inside the runtime's own operator for it, with a real ``OperatorContext`` and state
backend, so ``initialize_state``/``open``/``snapshot_state`` see what they see in a job:

- ``SourceFunctionHarness``: a push-style ``SourceFunction`` whose ``run(ctx)`` runs on a
  background thread; ``snapshot`` takes the checkpoint lock like the runtime does, ``cancel``
  fails loudly if ``run`` does not return.
- ``SinkFunctionHarness``: a per-record ``SinkFunction``.
- ``SourceReaderHarness`` / ``SinkWriterHarness``: the pull-based connector contract.

Snapshots are what the runtime stores for the subtask; a harness built with ``restored_state``
(the snapshots of *all* old subtasks, in a list) restores the way a job does, also at another
parallelism. ``run_to_completion`` runs a whole (bounded) job and returns its output.

Modules: ``functions`` (the function harnesses), ``connectors`` (the connector harnesses),
``jobs`` (``run_to_completion``); ``_subtask`` and ``_task`` hold what they share.
"""

from strom.testing.harness.connectors import SinkWriterHarness, SourceReaderHarness
from strom.testing.harness.functions import SinkFunctionHarness, SourceFunctionHarness
from strom.testing.harness.jobs import run_to_completion

__all__ = [
    "SinkFunctionHarness",
    "SinkWriterHarness",
    "SourceFunctionHarness",
    "SourceReaderHarness",
    "run_to_completion",
]
