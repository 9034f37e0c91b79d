"""Where the rolling ``FileSink`` keeps part files, and how it finishes them: on a filesystem
with rename (local disks, HDFS, any fsspec filesystem) or on S3 (``s3.py``).

A ``PartStore`` opens part files (``PartWriter``), makes them durable but invisible
(``PartWriter.close`` — the sink's pre-commit), makes them visible (``commit``, idempotent) or
throws them away (``abort``). Closed parts are described by a ``PartRecord``: a plain dict
that goes into the checkpoint, so a restored job (or another subtask) can commit it.

Rename stores write ``.{name}.inprogress.{uuid}`` next to the final ``{name}`` and commit by
moving it there. On a local disk the data is fsync'ed before the pre-commit returns and the
move is a hard link followed by an unlink, so an existing file is never overwritten; the
directory is fsync'ed after the commit. Other fsspec filesystems (HDFS through pyarrow or
webhdfs, ``memory://``) use their ``mv``, durable as far as the filesystem's close is.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from strom.errors import ConnectorError

__all__ = ["FoundPart", "FsspecStore", "LocalStore", "PartRecord", "PartStore", "PartWriter"]

log = logging.getLogger("strom.connectors.filesystem")

PartRecord = dict[str, Any]
"""A closed (pre-committed) part file: plain, picklable data kept in checkpoints."""

_BUFFER = 256 * 1024


@dataclass(frozen=True)
class FoundPart:
    """A part file found by listing the store."""

    name: str
    """Base name: the final name of finished parts and S3 uploads, else the in-progress name."""
    in_progress: bool
    handle: PartRecord
    """What ``abort`` takes to discard it (in-progress parts only)."""


class PartWriter(ABC):
    """An open, in-progress part file."""

    size: int = 0

    @property
    @abstractmethod
    def identity(self) -> str:
        """Equals ``PartStore.identity`` of this part's records and of its ``FoundPart``
        handle; "" while nothing of it exists in the store."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> PartRecord:
        """Make everything written durable but invisible; returns its record."""

    @abstractmethod
    def discard(self) -> None:
        """Close and delete what was written."""


class PartStore(ABC):
    def __init__(self, url: str) -> None:
        self.url = url
        """The base path as the user gave it (for messages)."""

    @abstractmethod
    def prepare(self) -> None:
        """Check that the base path can be written; raise ``ConnectorError`` naming it."""

    @abstractmethod
    def open_part(self, bucket_id: str, final_name: str, in_progress_name: str) -> PartWriter: ...

    @abstractmethod
    def commit(self, record: PartRecord, *, recovering: bool) -> None:
        """Make the part visible under its final name; a no-op if that happened already.

        If neither the in-progress data nor the final file exists, the part was lost: that is
        an error, except when ``recovering`` a restored checkpoint — its parts may have been
        committed long ago and moved away by a consumer since (as Flink does, a warning).
        """

    @abstractmethod
    def abort(self, record: PartRecord) -> None:
        """Discard a part that was never committed; missing data is fine."""

    @abstractmethod
    def list_parts(self) -> Iterator[FoundPart]:
        """Every finished and in-progress part file below the base path (any subtask)."""

    @staticmethod
    def identity(record: PartRecord) -> str:
        """What tells two records of the same in-progress part apart from all others."""
        return str(record.get("upload_id") or record.get("temp"))

    def _lost(self, what: str, recovering: bool) -> None:
        if not recovering:
            raise ConnectorError(f"FileSink: cannot commit {what}: its data is gone")
        log.warning(
            "FileSink: restored part %s is neither in progress nor finished; assuming it was "
            "committed before and has been moved away since",
            what,
        )


class LocalStore(PartStore):
    """Part files on a local disk (plain ``os`` calls, for fsync and no-clobber commits)."""

    def __init__(self, url: str, root: str) -> None:
        super().__init__(url)
        self.root = root

    def prepare(self) -> None:
        probe = os.path.join(self.root, f".strom-probe-{uuid.uuid4().hex}")
        try:
            os.makedirs(self.root, exist_ok=True)
            with open(probe, "xb"):
                pass
            os.unlink(probe)
        except OSError as e:
            raise ConnectorError(
                f"FileSink: cannot write to base path {self.url!r}: {e.strerror or e}"
            ) from e

    def open_part(self, bucket_id: str, final_name: str, in_progress_name: str) -> PartWriter:
        directory = os.path.join(self.root, bucket_id) if bucket_id else self.root
        os.makedirs(directory, exist_ok=True)
        return _LocalPart(
            os.path.join(directory, in_progress_name), os.path.join(directory, final_name)
        )

    def commit(self, record: PartRecord, *, recovering: bool) -> None:
        temp, final = record["temp"], record["final"]
        if os.path.exists(temp):
            if os.path.exists(final):
                if os.path.samefile(temp, final):
                    os.unlink(temp)  # a crash between link and unlink: finish it
                    _fsync_dir(os.path.dirname(final))
                    return
                raise ConnectorError(
                    f"FileSink: cannot commit {temp}: {final} already exists (another job "
                    "or sink writing part files with the same names into the same path?)"
                )
            try:
                os.link(temp, final)  # fails if final exists: never overwrite a part file
            except FileExistsError:
                raise ConnectorError(
                    f"FileSink: cannot commit {temp}: {final} appeared meanwhile"
                ) from None
            except OSError as e:
                if e.errno == errno.ENOENT:
                    raise
                os.replace(temp, final)  # no hard links on this filesystem
            else:
                os.unlink(temp)
            _fsync_dir(os.path.dirname(final))
            return
        check_final(self, final, _local_size(final), record["size"], recovering)

    def abort(self, record: PartRecord) -> None:
        try:
            os.unlink(record["temp"])
        except FileNotFoundError:
            pass

    def list_parts(self) -> Iterator[FoundPart]:
        for directory, _, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):
                    yield FoundPart(name, True, {"temp": os.path.join(directory, name)})
                else:
                    yield FoundPart(name, False, {})


class _LocalPart(PartWriter):
    def __init__(self, temp: str, final: str) -> None:
        self.temp, self.final = temp, final
        self.size = 0
        self._fh: IO[bytes] = open(temp, "xb", buffering=_BUFFER)  # noqa: SIM115 - close()

    @property
    def identity(self) -> str:
        return self.temp

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.size += len(data)

    def close(self) -> PartRecord:
        fh = self._fh
        fh.flush()
        os.fsync(fh.fileno())  # durable before the checkpoint that pre-commits it completes
        fh.close()
        _fsync_dir(os.path.dirname(self.temp))
        return {"temp": self.temp, "final": self.final, "size": self.size}

    def discard(self) -> None:
        self._fh.close()
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


def _fsync_dir(directory: str) -> None:
    # Makes a new or renamed directory entry survive a machine crash; not every platform or
    # filesystem can open a directory, and then there is nothing more to do.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _local_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None


def check_final(
    store: PartStore, final: str, size: int | None, expected: int, recovering: bool
) -> None:
    """The in-progress data is gone: fine if ``final`` holds the part already."""
    if size is None:
        store._lost(final, recovering)
    elif size != expected:
        raise ConnectorError(
            f"FileSink: cannot commit {final}: it exists with {size} bytes, but the part "
            f"written for it has {expected} (name collision with another writer?)"
        )


class FsspecStore(PartStore):
    """Part files on any fsspec filesystem with ``mv`` (HDFS, webhdfs, memory, ...)."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        super().__init__(url)
        self.fs = fs
        self.root = root

    def prepare(self) -> None:
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise ConnectorError(f"FileSink: cannot write to base path {self.url!r}: {e}") from e

    def open_part(self, bucket_id: str, final_name: str, in_progress_name: str) -> PartWriter:
        directory = posixpath.join(self.root, bucket_id) if bucket_id else self.root
        self.fs.makedirs(directory, exist_ok=True)
        return _FsspecPart(
            self.fs,
            posixpath.join(directory, in_progress_name),
            posixpath.join(directory, final_name),
        )

    def _size(self, path: str) -> int | None:
        try:
            return int(self.fs.size(path))
        except FileNotFoundError:
            return None

    def commit(self, record: PartRecord, *, recovering: bool) -> None:
        fs, temp, final = self.fs, record["temp"], record["final"]
        if fs.exists(temp):
            if fs.exists(final):
                # An object-store "rename" is copy + delete: a crash between the two leaves
                # both copies. The same size means the copy finished; else a name collision.
                if self._size(final) == record["size"]:
                    fs.rm(temp)
                    return
                raise ConnectorError(f"FileSink: cannot commit {temp}: {final} already exists")
            fs.mv(temp, final)
            return
        check_final(self, final, self._size(final), record["size"], recovering)

    def abort(self, record: PartRecord) -> None:
        try:
            self.fs.rm(record["temp"])
        except FileNotFoundError:
            pass

    def list_parts(self) -> Iterator[FoundPart]:
        try:
            paths = self.fs.find(self.root)
        except FileNotFoundError:
            return
        for path in paths:
            name = posixpath.basename(path)
            if name.startswith("."):
                yield FoundPart(name, True, {"temp": path})
            else:
                yield FoundPart(name, False, {})


class _FsspecPart(PartWriter):
    def __init__(self, fs: Any, temp: str, final: str) -> None:
        self.fs, self.temp, self.final = fs, temp, final
        self.size = 0
        self._fh = fs.open(temp, "wb")

    @property
    def identity(self) -> str:
        return self.temp

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.size += len(data)

    def close(self) -> PartRecord:
        self._fh.close()  # HDFS: close persists the blocks on the datanodes
        return {"temp": self.temp, "final": self.final, "size": self.size}

    def discard(self) -> None:
        self._fh.close()
        try:
            self.fs.rm(self.temp)
        except FileNotFoundError:
            pass
