"""The text file source (``read_text_file``). Guarantee: exactly-once with checkpoints.

The state of a subtask is one ``(relative path, byte offset, done)`` entry per file it has
started or finished, where the offset is that of the next unread line. A restore therefore
resumes every file right after the last line a checkpoint saw and never re-reads a finished
file. Files belong to subtask ``crc32(relative path) % parallelism``; since every subtask gets
the union of all entries on restore and keeps the ones it owns now, rescaling works.

Lines are split on "\\n" in binary (a trailing "\\r" is dropped) so offsets are exact byte
positions; this is why only encodings that write "\\r\\n" as those two bytes are accepted.

With ``monitor_interval`` the source is unbounded: it re-lists the directory every interval
and reads files it has not seen before. A monitored file counts as finished once it has not
grown for a whole interval; until then only terminated lines are emitted. Lines appended
after that are not read (unlike Flink's PROCESS_CONTINUOUSLY, which re-reads modified files
from the start): write files elsewhere and move them into the directory when complete.
"""

from __future__ import annotations

import codecs
import errno
import os
import threading
import time
from typing import Any, BinaryIO, ClassVar

from strom.connectors.base import DeliveryGuarantee, ReaderContext, Source, SourceReader
from strom.connectors.file.listing import FileFilter, list_files, owner_of, resolve
from strom.formats import DeserializationError

__all__ = ["FileSource"]

_CHUNK = 1 << 20
"""Bytes per read: large enough that per-call overhead vanishes, small enough to bound memory."""

# What a file's read step ended with.
_BUDGET = 0  # max_records reached; more lines may follow
_WAITING = 1  # at the end of a monitored file that may still grow
_DONE = 2  # the file is finished


class FileSource(Source[str]):
    """Lines of a file, or of every file under a directory. Guarantee: exactly-once.

    Args:
        path: a file or a directory (read recursively, sorted by path; names starting with
            "." or "_" are skipped).
        encoding: text encoding of the files; must encode "\\r\\n" as the ASCII bytes.
        monitor_interval: seconds between listings of the directory for new files; the
            source is then unbounded. ``None`` (the default) reads what is there and ends.
        file_filter: called with each file's full path; return False to skip the file.
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.EXACTLY_ONCE}
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str = "utf-8",
        monitor_interval: float | None = None,
        file_filter: FileFilter | None = None,
    ) -> None:
        self.path = os.fspath(path)
        codecs.lookup(encoding)  # an unknown encoding fails when the job is built
        try:
            ascii_breaks = "\r\n".encode(encoding) == b"\r\n"
        except UnicodeError:
            ascii_breaks = False
        if not ascii_breaks:
            raise ValueError(
                f"FileSource splits lines on the bytes of '\\r\\n', which {encoding!r} does not "
                "use; decode such files in a map() over a binary source instead"
            )
        if monitor_interval is not None and not monitor_interval > 0:
            raise ValueError(f"monitor_interval must be positive seconds, got {monitor_interval!r}")
        self.encoding = encoding
        self.monitor_interval = monitor_interval
        self.file_filter = file_filter
        self.bounded = monitor_interval is None

    def create_reader(self, ctx: ReaderContext) -> SourceReader[str]:
        # Fail on the obvious mistakes here, with the path in the message, rather than on the
        # first poll deep inside a running job.
        try:
            os.stat(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "FileSource: no such file or directory", self.path
            ) from None
        if not os.access(self.path, os.R_OK):
            raise PermissionError(errno.EACCES, "FileSource: cannot read", self.path)
        return _FileReader(self, ctx)

    def describe(self) -> str:
        mode = f", monitored every {self.monitor_interval}s" if self.monitor_interval else ""
        return f"File Source ({self.path}{mode})"


class _Split:
    """One file being read: the exact byte offset of the next line and a window of lines."""

    __slots__ = (
        "encoding",
        "eof_since",
        "fh",
        "index",
        "line_no",
        "lines",
        "offset",
        "path",
        "relative",
        "rest",
    )

    def __init__(self, relative: str, path: str, offset: int, encoding: str) -> None:
        self.relative = relative
        self.path = path
        self.offset = offset
        # Line numbers are only known when reading from the start: the state keeps offsets.
        self.line_no: int | None = 1 if offset == 0 else None
        self.encoding = encoding
        self.fh: BinaryIO | None = None
        self.lines: list[bytes] = []  # complete lines read but not yet emitted
        self.index = 0  # next line in ``lines``
        self.rest: list[bytes] = []  # bytes after the last "\n" read so far
        self.eof_since: float | None = None

    def open(self) -> None:
        fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            size = os.fstat(fh.fileno()).st_size
            if self.offset > size:
                raise ValueError(
                    f"FileSource: {self.path} has {size} bytes but the restored position is "
                    f"byte {self.offset}; the file was truncated or replaced since the checkpoint"
                )
            fh.seek(self.offset)
        except BaseException:
            fh.close()
            raise
        self.fh = fh

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def read(self, out: list[str], limit: int, quiet: float | None) -> int:
        """Append up to ``limit`` lines to ``out``. At EOF the file is done at once when
        ``quiet`` is None, otherwise once it has not grown for ``quiet`` seconds."""
        assert self.fh is not None
        emitted = 0
        while emitted < limit:
            available = len(self.lines) - self.index
            if available:
                take = min(available, limit - emitted)
                self._emit(out, take)
                emitted += take
                continue
            chunk = self.fh.read(_CHUNK)
            if chunk:
                self.eof_since = None
                self._absorb(chunk)
                continue
            if quiet is not None:
                now = time.monotonic()
                if self.eof_since is None:
                    self.eof_since = now
                if now - self.eof_since < quiet:
                    return _WAITING
            if self.rest:
                # the last line has no terminator: it is complete only now that the file is
                self.lines = [b"".join(self.rest)]
                self.index = 0
                self.rest = []
                self._emit(out, 1, terminated=False)
            return _DONE
        return _BUDGET

    def _absorb(self, chunk: bytes) -> None:
        if b"\n" not in chunk:
            # pieces are joined once a terminator arrives: repeated concatenation of a very
            # long line would be quadratic
            self.rest.append(chunk)
            return
        data = b"".join((*self.rest, chunk)) if self.rest else chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        self.rest = [tail] if tail else []
        self.lines = lines
        self.index = 0

    def _emit(self, out: list[str], count: int, *, terminated: bool = True) -> None:
        start = self.index
        raw = self.lines[start : start + count]
        encoding = self.encoding
        try:
            texts = [line.decode(encoding) for line in raw]
        except UnicodeDecodeError:
            raise self._decode_error(raw) from None
        out.extend(text[:-1] if text.endswith("\r") else text for text in texts)
        self.index = start + count
        self.offset += sum(map(len, raw)) + (count if terminated else 0)
        if self.line_no is not None:
            self.line_no += count
        if self.index == len(self.lines):
            self.lines = []
            self.index = 0

    def _decode_error(self, raw: list[bytes]) -> DeserializationError:
        offset = self.offset
        for i, line in enumerate(raw):
            try:
                line.decode(self.encoding)
            except UnicodeDecodeError as exc:
                where = f"file={self.path}"
                if self.line_no is not None:
                    where += f" line={self.line_no + i}"
                where += f" byte_offset={offset}"
                err = DeserializationError(
                    line, f"invalid {self.encoding} at byte {exc.start}: {exc.reason}", where
                )
                err.__cause__ = exc
                return err
            offset += len(line) + 1
        raise AssertionError("a batch that failed to decode decoded line by line")


class _FileReader(SourceReader[str]):
    def __init__(self, source: FileSource, ctx: ReaderContext) -> None:
        self._root = source.path
        self._encoding = source.encoding
        self._filter = source.file_filter
        self._interval = source.monitor_interval
        self._subtask = ctx.subtask_index
        self._parallelism = ctx.parallelism
        self._max_wait = ctx.max_poll_wait
        self._records = ctx.metrics.counter("records_in")
        self._files_read = ctx.metrics.counter("files_read")
        self._root_is_dir = os.path.isdir(self._root)
        self._done: dict[str, int] = {}  # finished files: relative path -> size read
        self._pending: dict[str, _Split] = {}  # files to read, in read order
        self._known: set[str] = set()  # every relative path listed or restored so far
        self._next_scan = 0.0
        self._wake = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, restored_state: list[Any] | None) -> None:
        resumed: dict[str, tuple[int, bool]] = {}
        for entry in restored_state or []:
            relative, offset, done = _parse_entry(entry)
            if owner_of(relative, self._parallelism) != self._subtask:
                continue
            previous = resumed.get(relative)
            if previous is None or (done, offset) > (previous[1], previous[0]):
                resumed[relative] = (offset, done)
        for relative, (offset, done) in sorted(resumed.items()):
            self._known.add(relative)
            if done:
                self._done[relative] = offset
            else:
                path = resolve(self._root, relative, self._root_is_dir)
                self._pending[relative] = _Split(relative, path, offset, self._encoding)
        for split in self._pending.values():
            _check_readable(split.path, "file to resume from the restored state is missing")
        self._scan()
        for split in self._pending.values():
            if split.offset == 0:
                _check_readable(split.path, "no such file")

    def close(self) -> None:
        for split in self._pending.values():
            split.close()

    def wakeup(self) -> None:
        self._wake.set()

    # -- reading --------------------------------------------------------------------------

    def poll(self, max_records: int) -> list[str] | None:
        now = time.monotonic()
        if self._interval is not None and now >= self._next_scan:
            self._scan()
        out: list[str] = []
        deadline = now + self._max_wait
        for split in list(self._pending.values()):
            remaining = max_records - len(out)
            if remaining <= 0 or (out and time.monotonic() >= deadline):
                break
            if split.fh is None:
                split.open()
            status = split.read(out, remaining, self._interval)
            if status == _DONE:
                self._finish(split)
            elif status == _BUDGET:
                break
        if out:
            self._records.inc(len(out))
            return out
        if self._interval is None:
            return None if not self._pending else out
        self._idle()
        return out

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        entries: list[Any] = [(relative, size, True) for relative, size in self._done.items()]
        entries.extend(
            (s.relative, s.offset, False)
            for s in self._pending.values()
            if s.fh is not None or s.offset > 0
        )
        return entries

    # -- internals ------------------------------------------------------------------------

    def _scan(self) -> None:
        if self._interval is not None:
            self._next_scan = time.monotonic() + self._interval
        new: list[_Split] = []
        for relative, path in list_files(self._root, self._filter):
            if relative in self._known:
                continue
            self._known.add(relative)
            if owner_of(relative, self._parallelism) == self._subtask:
                new.append(_Split(relative, path, 0, self._encoding))
        for split in new:
            self._pending[split.relative] = split

    def _finish(self, split: _Split) -> None:
        split.close()
        del self._pending[split.relative]
        self._done[split.relative] = split.offset
        self._files_read.inc()

    def _idle(self) -> None:
        # Nothing to emit: sleep a little instead of letting the task loop spin, but never past
        # max_poll_wait (checkpoints and cancellation wait for poll) or the next listing.
        timeout = min(self._max_wait, max(0.0, self._next_scan - time.monotonic()))
        if timeout > 0 and self._wake.wait(timeout):
            self._wake.clear()


def _parse_entry(entry: Any) -> tuple[str, int, bool]:
    try:
        relative, offset, done = entry
    except (TypeError, ValueError):
        raise ValueError(
            f"FileSource cannot restore from state entry {entry!r}; "
            "expected (path, byte_offset, done)"
        ) from None
    if not isinstance(relative, str) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"FileSource cannot restore from state entry {entry!r}")
    return relative, offset, bool(done)


def _check_readable(path: str, missing: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"FileSource: {missing}", path)
    if not os.access(path, os.R_OK):
        raise PermissionError(errno.EACCES, "FileSource: cannot read", path)
