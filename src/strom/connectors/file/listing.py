"""Which files a ``FileSource`` reads and which subtask owns each of them.

Listing is deterministic (sorted by relative path) and ownership depends only on the relative
path, so every subtask agrees on the split of files without talking to the others, and a
restore at another parallelism finds each file's new owner from the path in its state entry.
This module holds no positions itself; the exactly-once guarantee lives in ``source.py``.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Callable

__all__ = ["enumerate_files", "is_hidden", "list_files", "owner_of", "resolve"]

FileFilter = Callable[[str], bool]


def is_hidden(name: str) -> bool:
    """Flink skips names starting with "." or "_": marker files such as ``_SUCCESS`` and the
    in-progress files of writers that rename on completion."""
    return name.startswith((".", "_"))


def owner_of(relative_path: str, parallelism: int) -> int:
    """The subtask that reads ``relative_path``.

    crc32 rather than ``hash()``: string hashing is salted per process, and every subtask
    (possibly in another process, or after a restart) must compute the same owner.
    """
    return zlib.crc32(relative_path.encode("utf-8", "surrogateescape")) % parallelism


def resolve(root: str, relative_path: str, root_is_dir: bool) -> str:
    """The full path of a file known by its relative path (as stored in state)."""
    if not root_is_dir:
        return root
    return os.path.join(root, *relative_path.split("/"))


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "FileSource: no such file or directory", path)


def list_files(root: str, file_filter: FileFilter | None = None) -> list[tuple[str, str]]:
    """``(relative path, full path)`` of every file under ``root``, sorted by relative path.

    Relative paths use "/" on every platform because they end up in checkpoints and decide
    ownership. A ``root`` that is a file lists just that file (named by its base name), even
    when the name looks hidden: the user asked for it explicitly. Directory symlinks are
    followed, but each directory is visited once, so a link cycle cannot loop forever.
    """
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise _missing(root) from None
    if not stat.S_ISDIR(st.st_mode):
        if file_filter is not None and not file_filter(root):
            return []
        return [(os.path.basename(root) or root, root)]

    found: list[tuple[str, str]] = []
    visited = {(st.st_dev, st.st_ino)}
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            if directory == root:
                raise _missing(root) from None
            # a sub-directory removed while a monitoring source lists the tree: nothing to read
            continue
        for entry in entries:
            if is_hidden(entry.name):
                continue
            relative = prefix + entry.name
            try:
                if entry.is_dir():
                    sub = entry.stat()
                    if (sub.st_dev, sub.st_ino) not in visited:
                        visited.add((sub.st_dev, sub.st_ino))
                        stack.append((entry.path, relative + "/"))
                    continue
                is_file = entry.is_file()
            except FileNotFoundError:
                continue  # vanished between scandir and stat
            if is_file and (file_filter is None or file_filter(entry.path)):
                found.append((relative, entry.path))
    found.sort()
    return found


def enumerate_files(
    path: str | os.PathLike[str], file_filter: FileFilter | None = None
) -> list[str]:
    """Full paths of the files a ``FileSource(path, file_filter=...)`` reads, in read order.

    ``file_filter`` receives each candidate's full path and returns True to keep it; hidden
    files and directories (names starting with "." or "_") are skipped before it is asked.
    """
    return [full for _, full in list_files(os.fspath(path), file_filter)]
