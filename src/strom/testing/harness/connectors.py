"""Harnesses for the pull-based connector contract (``Source`` / ``Sink``), in the test's thread.

``SourceReaderHarness`` and ``SinkWriterHarness`` differ only in what they drive; what a
connector subtask needs around it — the checks on the connector, the runtime operator, the
restore of the snapshots of all old subtasks, a snapshot as a checkpoint takes it — is
``ConnectorHarness``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from strom.connectors.base import Batch, Sink, SinkWriter, Source, SourceReader
from strom.runtime.operators.base import NullOutput, Output, StreamOperator
from strom.runtime.operators.sinks import SinkWriterOperator
from strom.runtime.operators.sources import SourceReaderOperator
from strom.testing.harness._subtask import (
    CollectingOutput,
    SourceHarness,
    SubtaskHarness,
    as_batch,
    connector_snapshots,
    expect_instance,
)

__all__ = ["ConnectorHarness", "SinkWriterHarness", "SourceReaderHarness"]

T = TypeVar("T")


def check_connector(
    connector: Source[Any] | Sink[Any], kind: type[Source[Any]] | type[Sink[Any]], parallelism: int
) -> None:
    """``TypeError`` unless ``connector`` is a ``kind``; ``ValueError`` if it cannot run with
    ``parallelism`` subtasks."""
    expect_instance(connector, kind, f"connectors.base.{kind.__name__}")
    if connector.max_parallelism is not None and parallelism > connector.max_parallelism:
        raise ValueError(f"{connector.describe()} supports {connector.max_parallelism} subtask(s)")


class ConnectorHarness(SubtaskHarness):
    """One subtask of a connector around its runtime operator, opened (and restored) at once.

    Subclasses check the connector (``check_connector``) before they build the operator, and
    name the key under which the operator snapshots the connector's state.
    """

    state_key: ClassVar[str]
    """``"reader"`` or ``"writer"``: where the operator's snapshot holds the connector's state."""

    def __init__(
        self,
        operator: StreamOperator,
        output: Output,
        subtask_index: int,
        parallelism: int,
        restored_state: Sequence[Sequence[Any]] | None,
        *,
        attempt: int,
        processing_time: Callable[[], int] | None,
    ) -> None:
        super().__init__(
            operator,
            output,
            subtask_index,
            parallelism,
            attempt=attempt,
            processing_time=processing_time,
        )
        self._open(connector_snapshots(self.state_key, restored_state))

    def _snapshot(self, checkpoint_id: int | None, *, prepare: bool) -> list[Any]:
        cid, ts = self._checkpoint(checkpoint_id)
        if prepare:
            self._operator.prepare_snapshot(cid)
        return list(copy.deepcopy(self._operator.snapshot_state(cid, ts)[self.state_key]))


class SourceReaderHarness(ConnectorHarness, SourceHarness, Generic[T]):
    """Drives the reader of one subtask of a pull-based ``Source``, in the calling thread.

    The reader is created and opened in the constructor. ``restored_state`` is what
    ``snapshot()`` returned for each old subtask (a list of lists); the reader gets it as the
    runtime gives it, so restores at another parallelism can be tested too.
    """

    state_key = "reader"

    def __init__(
        self,
        source: Source[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[Sequence[Any]] | None = None,
        *,
        max_records: int = 1024,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        name: str | None = None,
    ) -> None:
        check_connector(source, Source, parallelism)
        self.source = source
        self.max_records = max_records
        self.finished = False
        """True once ``poll`` returned None."""
        self.output_sink = CollectingOutput()
        self._reader_operator = SourceReaderOperator(name or source.describe(), source)
        super().__init__(
            self._reader_operator,
            self.output_sink,
            subtask_index,
            parallelism,
            restored_state,
            attempt=attempt,
            processing_time=processing_time,
        )

    @property
    def reader(self) -> SourceReader[T]:
        return self._reader_operator.reader

    def poll(self) -> list[T] | None:
        """One ``poll``: its records (``[]`` if none right now), or None once finished."""
        if self.finished:
            return None
        batch = self.reader.poll(self.max_records)
        if batch is None:
            self.finished = True
            return None
        if isinstance(batch, Batch):
            values, timestamps = list(batch.values), batch.timestamps
        elif isinstance(batch, list):
            values, timestamps = list(batch), None
        else:
            raise TypeError(
                f"{type(self.reader).__name__}.poll returned {type(batch).__name__}; "
                "expected a list, a Batch or None"
            )
        if values:
            self.output_sink.emit(values, timestamps)
        return values

    def poll_all(
        self, max_batches: int | None = None, until_end: bool = True, timeout: float = 10.0
    ) -> list[T]:
        """Poll repeatedly; all records read.

        Stops when the reader is finished, after ``max_batches`` non-empty batches, or — with
        ``until_end=False`` — at the first poll with nothing available. With ``until_end`` it
        polls on through empty polls, and raises ``TimeoutError`` if the reader does not finish
        within ``timeout`` seconds.
        """
        out: list[T] = []
        batches = 0
        deadline = time.monotonic() + timeout
        while max_batches is None or batches < max_batches:
            batch = self.poll()
            if batch is None:
                break
            if batch:
                out.extend(batch)
                batches += 1
            elif not until_end:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.source.describe()}: not finished within {timeout} s "
                    f"({len(out)} records read)"
                )
        return out

    def snapshot(self, checkpoint_id: int | None = None) -> list[Any]:
        """The reader's ``snapshot_state``; restore from a list of these."""
        return self._snapshot(checkpoint_id, prepare=False)

    def wakeup(self) -> None:
        self.reader.wakeup()


class SinkWriterHarness(ConnectorHarness, Generic[T]):
    """Drives the writer of one subtask of a batch ``Sink``, in the calling thread.

    The writer is created and opened in the constructor; ``restored_state`` is what
    ``snapshot()`` returned for each old subtask (a list of lists), dealt to this subtask as the
    runtime deals it. ``snapshot`` flushes first, as before a checkpoint.
    """

    state_key = "writer"

    def __init__(
        self,
        sink: Sink[T],
        subtask_index: int = 0,
        parallelism: int = 1,
        restored_state: Sequence[Sequence[Any]] | None = None,
        *,
        attempt: int = 0,
        processing_time: Callable[[], int] | None = None,
        name: str | None = None,
    ) -> None:
        check_connector(sink, Sink, parallelism)
        self.sink = sink
        self._writer_operator = SinkWriterOperator(name or sink.describe(), sink)
        super().__init__(
            self._writer_operator,
            NullOutput(),
            subtask_index,
            parallelism,
            restored_state,
            attempt=attempt,
            processing_time=processing_time,
        )

    @property
    def writer(self) -> SinkWriter[T]:
        return self._writer_operator.writer

    def write(self, values: Iterable[T], timestamps: Iterable[int] | None = None) -> None:
        """One batch, as the runtime hands it to ``write``."""
        self._operator.process_batch(*as_batch(values, timestamps))

    def flush(self, end_of_input: bool = False) -> None:
        self.writer.flush(end_of_input)

    def end_input(self) -> None:
        """The input is exhausted: ``flush(True)``, as after the last batch of a job."""
        self._operator.end_input()

    def snapshot(self, checkpoint_id: int | None = None) -> list[Any]:
        """``flush(False)``, then ``snapshot_state``, as at a checkpoint."""
        return self._snapshot(checkpoint_id, prepare=True)
