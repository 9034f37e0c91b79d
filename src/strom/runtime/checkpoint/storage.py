"""Checkpoint storage on the local filesystem or any fsspec filesystem.

Layout (one directory per run of a job, one per checkpoint)::

    <storage>/<job name>/<run id>/chk-<n>/task-<vertex>-<subtask>.state   pickled snapshots
    <storage>/<job name>/<run id>/chk-<n>/_metadata                        JSON, written last

A checkpoint exists only once its ``_metadata`` exists: state files are written first, then
the metadata atomically (local: temp file, fsync, rename, fsync of the directory; object
stores: a single PUT, which is atomic). A directory without valid metadata is a torn
checkpoint and is never chosen for restore. The metadata lists every state file with its size
and SHA-256, so a corrupt or missing file is reported by name instead of restoring garbage.

State files are written with the job's ``StateSerializer`` (``env.set_state_backend(...,
serializer=...)``; default pickle, which handles any Python value), named in the metadata, so a
checkpoint is never read with another serializer by mistake.

Trust model: with the default serializer, state files are pickles. Restoring executes no code
from anywhere but the checkpoint storage you point strom at — keep that storage as trusted as
your job's code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import fsspec

from strom.errors import StromError
from strom.runtime.state.serializer import PickleSerializer, StateSerializer, default_serializer

log = logging.getLogger("strom.checkpoint")

METADATA = "_metadata"
FORMAT_VERSION = 1


class CheckpointRestoreError(StromError):
    """A checkpoint or savepoint cannot be restored; the message names the file and why."""


@dataclass
class CompletedCheckpoint:
    checkpoint_id: int
    timestamp: int
    path: str
    job_name: str
    max_parallelism: int
    is_savepoint: bool
    operators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """``{operator uid: [snapshot of each old subtask]}``."""
    size_bytes: int = 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "job"


def serializer_name(serializer: StateSerializer) -> str:
    kind = type(serializer)
    return f"{kind.__module__}.{kind.__qualname__}"


class CheckpointStorage:
    """Writes the checkpoints of one run of one job."""

    def __init__(
        self, uri: str, job_name: str, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        self.local = _is_local(self.fs)
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.job_dir = f"{root.rstrip('/')}/{_safe(job_name)}"
        self.run_dir = f"{self.job_dir}/{run_id}"

    def checkpoint_dir(self, checkpoint_id: int) -> str:
        return f"{self.run_dir}/chk-{checkpoint_id}"

    def write_state(self, directory: str, name: str, data: bytes) -> dict[str, Any]:
        """Write one task's serialized snapshot; returns its metadata entry."""
        path = f"{directory}/{name}"
        self.fs.makedirs(directory, exist_ok=True)
        if self.local:
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            self.fs.pipe_file(path, data)
        return {"file": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def commit(self, directory: str, metadata: dict[str, Any]) -> None:
        """Make the checkpoint in ``directory`` visible: write ``_metadata`` atomically."""
        data = json.dumps({"format": FORMAT_VERSION, **metadata}, indent=1).encode()
        path = f"{directory}/{METADATA}"
        if self.local:
            tmp = f"{path}.tmp-{secrets.token_hex(4)}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            self.fs.pipe_file(path, data)

    def discard(self, directory: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(directory, recursive=True)

    def discard_run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.run_dir, recursive=True)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


def _read_metadata(fs: Any, directory: str) -> dict[str, Any]:
    path = f"{directory.rstrip('/')}/{METADATA}"
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        raise CheckpointRestoreError(
            f"{path}: no checkpoint metadata (not a checkpoint, or a torn one)"
        ) from None
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise CheckpointRestoreError(f"{path}: metadata is not valid JSON ({e})") from None
    found = meta.get("format") if isinstance(meta, dict) else meta
    if not isinstance(meta, dict) or found != FORMAT_VERSION:
        raise CheckpointRestoreError(
            f"{path}: unsupported metadata format {found!r} "
            f"(this strom reads format {FORMAT_VERSION})"
        )
    return meta


def find_latest(
    uri: str, job_name: str, storage_options: dict[str, Any] | None = None
) -> str | None:
    """The newest completed checkpoint of any run of ``job_name`` under ``uri``, or None."""
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    pattern = f"{root.rstrip('/')}/{_safe(job_name)}/*/chk-*/{METADATA}"
    best: tuple[int, int, str] | None = None
    for meta_path in fs.glob(pattern):
        directory = meta_path.rsplit("/", 1)[0]
        try:
            meta = _read_metadata(fs, directory)
        except CheckpointRestoreError as e:
            log.warning("skipping %s", e)
            continue
        key = (int(meta["timestamp"]), int(meta["checkpoint_id"]), directory)
        if best is None or key > best:
            best = key
    if best is None:
        return None
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return best[2] if protocol in ("file", "local") else f"{protocol}://{best[2]}"


def load(
    path: str,
    storage_options: dict[str, Any] | None = None,
    serializer: StateSerializer | None = None,
) -> CompletedCheckpoint:
    """Load and verify a checkpoint or savepoint directory (local path or fsspec URL)."""
    serializer = serializer or default_serializer()
    fs, directory = fsspec.core.url_to_fs(path, **(storage_options or {}))
    meta = _read_metadata(fs, directory)
    written_with = meta.get("serializer", serializer_name(PickleSerializer()))
    if written_with != serializer_name(serializer):
        raise CheckpointRestoreError(
            f"{path}: state was written with serializer {written_with}, but the job uses "
            f"{serializer_name(serializer)}"
        )
    operators: dict[str, list[dict[str, Any]]] = {}
    size = 0
    for entry in meta.get("files", []):
        file_path = f"{directory.rstrip('/')}/{entry['file']}"
        try:
            data = fs.cat_file(file_path)
        except FileNotFoundError:
            raise CheckpointRestoreError(
                f"{file_path}: state file listed in metadata is missing"
            ) from None
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointRestoreError(
                f"{file_path}: state file is corrupt (size or SHA-256 differs from the metadata)"
            )
        try:
            snapshot = serializer.loads(data)
        except Exception as e:
            raise CheckpointRestoreError(f"{file_path}: cannot deserialize state ({e})") from e
        size += len(data)
        for uid, op_snapshot in snapshot.items():
            operators.setdefault(uid, []).append(op_snapshot)
    return CompletedCheckpoint(
        checkpoint_id=int(meta["checkpoint_id"]),
        timestamp=int(meta["timestamp"]),
        path=path,
        job_name=str(meta.get("job_name", "")),
        max_parallelism=int(meta["max_parallelism"]),
        is_savepoint=bool(meta.get("is_savepoint", False)),
        operators=operators,
        size_bytes=size,
    )


def resolve(
    path: str, storage_uri: str, job_name: str, storage_options: dict[str, Any] | None = None
) -> str:
    """``latest`` -> the newest completed checkpoint of the job; a path is returned as is."""
    if path != "latest":
        return path
    found = find_latest(storage_uri, job_name, storage_options)
    if found is None:
        raise CheckpointRestoreError(
            f"no completed checkpoint of job {job_name!r} under {storage_uri} to restore from"
        )
    return found
