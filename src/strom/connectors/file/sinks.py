"""Text and CSV file sinks (``write_as_text`` / ``write_as_csv``). Guarantee: at-least-once.

As in Flink, a sink with parallelism 1 writes the file ``path``; with parallelism n > 1,
``path`` is a directory holding one file per subtask, named "1" .. "n" (subtask index + 1).
Each subtask only ever touches its own file, so subtasks never race to delete each other's
output. A restore at another parallelism keeps the layout the first run chose (see
``_FileWriter._restored_target``).

Writes are buffered; ``flush`` (called by the runtime before every checkpoint and at the end
of input) writes the buffer and fsyncs the file, so everything before a completed checkpoint
is durable. After a failure the job restarts from the last checkpoint and the writer appends
to its file: records written between that checkpoint and the failure appear twice (and a
record cut short by a crash may leave a partial line). The snapshot state — each file's length
after the flush — is kept for diagnostics only.
"""

from __future__ import annotations

import codecs
import errno
import logging
import os
import re
import shutil
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from enum import Enum
from typing import IO, Any, ClassVar

from strom.connectors.base import DeliveryGuarantee, Sink, SinkWriter, WriterContext
from strom.formats import CsvSchema, SerializationError

__all__ = ["CsvSink", "TextSink", "WriteMode", "output_file"]

_BUFFER = 1 << 20
_MOVING = ".strom-moving"
"""Suffix of the single-file output while a rescaled restore moves it into the directory."""
_DIRECTORY_WAIT = 60.0


log = logging.getLogger("strom.connectors.file")


class WriteMode(Enum):
    """What a file sink does when its output file already exists."""

    NO_OVERWRITE = "no_overwrite"
    """Fail with ``FileExistsError`` (the default, as in Flink)."""
    OVERWRITE = "overwrite"
    """Replace the existing file (or, at parallelism 1, an existing directory)."""

    @classmethod
    def parse(cls, value: WriteMode | str) -> WriteMode:
        if isinstance(value, WriteMode):
            return value
        try:
            return cls(str(value).lower().replace("-", "_"))
        except ValueError:
            raise ValueError(
                f"unknown write mode {value!r}; use WriteMode.NO_OVERWRITE or WriteMode.OVERWRITE"
            ) from None


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DIRECTORY_WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {_DIRECTORY_WAIT:.0f} s waiting for {what}")
        time.sleep(0.01)


def output_file(path: str, subtask_index: int, parallelism: int) -> str:
    """The file subtask ``subtask_index`` of a file sink on ``path`` writes."""
    return path if parallelism == 1 else os.path.join(path, str(subtask_index + 1))


class _FileSink(Sink[Any]):
    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.AT_LEAST_ONCE}
    )

    def __init__(self, path: str | os.PathLike[str], write_mode: WriteMode | str) -> None:
        self.path = os.fspath(path)
        self.write_mode = WriteMode.parse(write_mode)

    @abstractmethod
    def _encoder(self, target: str) -> Callable[[list[Any]], bytes]:
        """Turns a batch of records into the bytes appended to ``target``."""

    def create_writer(self, ctx: WriterContext) -> SinkWriter[Any]:
        writer = _FileWriter(self, ctx.subtask_index, ctx.parallelism)
        writer.restarted = ctx.attempt > 0
        return writer

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.path})"


class TextSink(_FileSink):
    """One line per record: ``to_string(record)`` followed by "\\n". Guarantee: at-least-once.

    Args:
        path: the output file (parallelism 1) or directory of files "1".."n".
        write_mode: ``WriteMode.NO_OVERWRITE`` fails if the output exists; ``OVERWRITE``
            replaces it.
        encoding: text encoding of the output.
        to_string: how a record becomes its line (``str`` by default, like Flink's toString).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        write_mode: WriteMode | str = WriteMode.NO_OVERWRITE,
        encoding: str = "utf-8",
        to_string: Callable[[Any], str] = str,
    ) -> None:
        super().__init__(path, write_mode)
        codecs.lookup(encoding)  # an unknown encoding fails when the job is built
        self.encoding = encoding
        self.to_string = to_string

    def _encoder(self, target: str) -> Callable[[list[Any]], bytes]:
        to_string, encoding = self.to_string, self.encoding

        def encode(values: list[Any]) -> bytes:
            if not values:
                return b""
            try:
                return ("\n".join(map(to_string, values)) + "\n").encode(encoding)
            except (TypeError, UnicodeEncodeError) as exc:
                # Redo the batch record by record to name the record at fault.
                for value in values:
                    text = to_string(value)
                    if not isinstance(text, str):
                        raise SerializationError(
                            value, f"to_string returned {type(text).__name__}, not str", target
                        ) from exc
                    try:
                        text.encode(encoding)
                    except UnicodeEncodeError as inner:
                        raise SerializationError(
                            value, f"cannot encode in {encoding}: {inner.reason}", target
                        ) from inner
                raise

        return encode


class CsvSink(_FileSink):
    """Tuples, lists or dicts as CSV rows. Guarantee: at-least-once.

    Fields containing the field delimiter, a quote or a line break are quoted, with quotes
    doubled (the csv module's minimal quoting). Without a schema a dict is written as its
    values in insertion order, ``None`` as an empty field, any other record as a one-field
    row. A ``schema`` (``strom.formats.CsvSchema``) takes over formatting, delimiters,
    ``None`` handling, field order of dicts and encoding.

    Args:
        path: the output file (parallelism 1) or directory of files "1".."n".
        write_mode: ``WriteMode.NO_OVERWRITE`` fails if the output exists; ``OVERWRITE``
            replaces it.
        row_delimiter: written after every row.
        field_delimiter: written between fields.
        schema: a ``CsvSchema`` to format rows with; then leave the delimiters at default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        write_mode: WriteMode | str = WriteMode.NO_OVERWRITE,
        row_delimiter: str = "\n",
        field_delimiter: str = ",",
        schema: CsvSchema | None = None,
    ) -> None:
        super().__init__(path, write_mode)
        if schema is not None:
            if (row_delimiter, field_delimiter) != ("\n", ","):
                raise ValueError(
                    "CsvSink: pass the delimiters either to the CsvSchema or to the sink, not both"
                )
            self.format_row: Callable[[Any], str] = schema.format_row
            self.encoding = schema.encoding
        else:
            self.format_row = _CsvRowFormatter(field_delimiter, row_delimiter)
            self.encoding = "utf-8"
        self.schema = schema
        self.row_delimiter = row_delimiter
        self.field_delimiter = field_delimiter

    def _encoder(self, target: str) -> Callable[[list[Any]], bytes]:
        format_row, encoding = self.format_row, self.encoding

        def encode(values: list[Any]) -> bytes:
            try:
                text = "".join(map(format_row, values))
            except SerializationError as exc:
                exc.origin = exc.origin or target
                raise
            try:
                return text.encode(encoding)
            except UnicodeEncodeError as exc:
                for value in values:
                    try:
                        format_row(value).encode(encoding)
                    except UnicodeEncodeError as inner:
                        raise SerializationError(
                            value, f"cannot encode in {encoding}: {inner.reason}", target
                        ) from inner
                raise exc

        return encode


class _CsvRowFormatter:
    """Minimal CSV quoting for any delimiters, including multi-character ones that the csv
    module cannot write."""

    def __init__(self, field_delimiter: str, row_delimiter: str) -> None:
        if not field_delimiter or not row_delimiter:
            raise ValueError("CsvSink: field_delimiter and row_delimiter must not be empty")
        if '"' in field_delimiter + row_delimiter:
            raise ValueError('CsvSink: the quote character " cannot be part of a delimiter')
        if field_delimiter in row_delimiter or row_delimiter in field_delimiter:
            raise ValueError(
                f"CsvSink: field_delimiter {field_delimiter!r} and row_delimiter "
                f"{row_delimiter!r} must differ"
            )
        self.field_delimiter = field_delimiter
        self.row_delimiter = row_delimiter
        specials = set(field_delimiter + row_delimiter + '"\r\n')
        self._needs_quotes = re.compile("[" + re.escape("".join(sorted(specials))) + "]").search

    def _field(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if self._needs_quotes(text):
            return '"' + text.replace('"', '""') + '"'
        return text

    def __call__(self, element: Any) -> str:
        fields: Any
        if isinstance(element, tuple | list):
            fields = element
        elif isinstance(element, Mapping):
            fields = list(element.values())
        else:
            fields = (element,)
        if not fields:
            raise SerializationError(element, "a CSV row needs at least one field")
        if len(fields) == 1 and fields[0] in (None, ""):
            # an empty line would read back as no row at all; the csv module writes "" too
            return '""' + self.row_delimiter
        return self.field_delimiter.join(map(self._field, fields)) + self.row_delimiter


class _FileWriter(SinkWriter[Any]):
    def __init__(self, sink: _FileSink, subtask: int, parallelism: int) -> None:
        self._sink_name = type(sink).__name__
        # a CsvSchema may use its own line delimiter; both sinks end every row with a newline
        # by default, which is what a torn tail is recognised by
        self._row_end = getattr(sink, "row_delimiter", "\n").encode()
        self._root = sink.path
        self._mode = sink.write_mode
        self._subtask = subtask
        self._parallelism = parallelism
        self._target = output_file(sink.path, subtask, parallelism)
        self.restarted = False
        """A restart of the job: without restored state (no checkpoint completed yet) every
        record is replayed, so this writer's own earlier file is rewritten, whatever the mode."""
        self._encoder = sink._encoder
        self._encode = sink._encoder(self._target)
        self._fh: IO[bytes] | None = None
        self._length = 0

    def open(self, restored_state: list[Any] | None) -> None:
        overwrite = self._mode is WriteMode.OVERWRITE
        if restored_state is not None:
            self._target = self._restored_target()
            self._encode = self._encoder(self._target)
        elif self._parallelism > 1:
            self._prepare_directory(overwrite)
        else:
            parent = os.path.dirname(self._target)
            if parent:
                os.makedirs(parent, exist_ok=True)
        target = self._target
        if restored_state is not None:
            # A restarted job continues its output: the records after the checkpoint are
            # written again (at-least-once) instead of failing on the file the first run made.
            mode = "ab"
        elif overwrite or self.restarted:
            if self._parallelism == 1 and os.path.isdir(target):
                shutil.rmtree(target)  # Flink's OVERWRITE replaces a directory too
            mode = "wb"
        else:
            mode = "xb"
        try:
            fh = open(target, mode, buffering=_BUFFER)  # noqa: SIM115 - closed by close()
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST,
                f"{self._sink_name}: output already exists (write_mode is NO_OVERWRITE; "
                "use WriteMode.OVERWRITE to replace it)",
                target,
            ) from None
        if restored_state is not None:
            self._cut_torn_tail(fh, target)
            # files of earlier subtasks dealt to this one (a scale-down) are tidied here too
            for entry in restored_state:
                other = entry[0]
                if other != target and os.path.isfile(other):
                    with open(other, "r+b") as old:
                        self._cut_torn_tail(old, other)
        self._fh = fh
        self._length = fh.tell()

    def _restored_target(self) -> str:
        """The file to continue after a restore, at whatever parallelism the job has now.

        The layout the first run chose stays: a directory of files "1".."n" is continued as
        one (restored at parallelism 1, the writer appends to "1"), and a single file restored
        at parallelism n > 1 becomes file "1" of the directory (subtask 0 moves it; the others
        wait for the directory)."""
        root = self._root
        moving = root + _MOVING
        if (self._parallelism > 1 and os.path.isfile(root)) or os.path.exists(moving):
            if self._subtask == 0:
                if not os.path.exists(moving):
                    os.replace(root, moving)
                os.makedirs(root, exist_ok=True)
                os.replace(moving, os.path.join(root, "1"))
                log.info(
                    "%s: %s became a directory of files (rescaled restore)", self._sink_name, root
                )
            else:
                _wait_for(
                    lambda: os.path.isdir(root) and not os.path.exists(moving),
                    f"{self._sink_name}: subtask 0 to turn {root} into a directory",
                )
        if os.path.isdir(root):
            return os.path.join(root, str(self._subtask + 1))
        return root

    def _cut_torn_tail(self, fh: IO[bytes], target: str) -> None:
        """A process killed mid-write can leave half a row at the end; the records after the
        last checkpoint are written again anyway, so cut the file back to its last full row
        rather than glue the next row onto the torn one."""
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        window = min(size, 1 << 20)
        with open(target, "rb") as reader:
            reader.seek(size - window)
            tail = reader.read(window)
        if tail.endswith(self._row_end):
            return
        cut = tail.rfind(self._row_end)
        keep = size - window + cut + len(self._row_end) if cut >= 0 else 0
        log.warning(
            "%s: %s ends in a torn row (%d bytes); cutting it before appending",
            self._sink_name,
            target,
            size - keep,
        )
        fh.truncate(keep)
        fh.seek(keep)

    def _prepare_directory(self, overwrite: bool) -> None:
        root = self._root
        if os.path.exists(root) and not os.path.isdir(root):
            if not overwrite:
                raise FileExistsError(
                    errno.EEXIST,
                    f"{self._sink_name}: with parallelism {self._parallelism} the output path "
                    "must be a directory, but a file exists there (write_mode is NO_OVERWRITE)",
                    root,
                )
            # Every subtask may see the file; whichever removes it first wins, the others find
            # it gone or already replaced by the directory.
            try:
                os.remove(root)
            except FileNotFoundError:
                pass
            except OSError:
                if not os.path.isdir(root):
                    raise
        os.makedirs(root, exist_ok=True)

    def write(self, values: list[Any], timestamps: list[int] | None) -> None:
        if self._fh is None:
            raise RuntimeError(f"{self._sink_name} writer used before open() or after close()")
        self._fh.write(self._encode(values))

    def flush(self, end_of_input: bool) -> None:
        fh = self._fh
        if fh is None:
            return
        fh.flush()
        os.fsync(fh.fileno())
        self._length = fh.tell()

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [(self._target, self._length)]

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
