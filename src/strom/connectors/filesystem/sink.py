"""The rolling ``FileSink``: part files in bucket directories on any fsspec filesystem (local,
HDFS, S3, ...). Guarantee: **exactly-once** with checkpointing (Flink's ``FileSink``).

Every subtask writes its records into one in-progress part file per bucket. A part file is
rolled (closed) at every checkpoint and, between checkpoints, whenever the rolling policy
says so. Rolled parts are *pending*: durable but hidden. The writer is a
``TwoPhaseCommitSinkWriter``; one transaction is the set of parts rolled between two
checkpoints. At checkpoint *n* the open parts are closed and the transaction is pre-committed
into the checkpoint; when checkpoint *n* is complete its parts are *finished* — renamed to
``{prefix}-{subtask}-{counter}{suffix}`` (or, on S3, their multipart uploads completed).

After a failure the job restores the last completed checkpoint: its pending parts are
finished (idempotently: some may be already), and the records after it are replayed into new
parts. Parts the failed attempt left behind (in-progress files, pre-committed parts of
checkpoints that never completed, open S3 uploads) are deleted — on a restore, or on a
restart without a completed checkpoint — but only once the first checkpoint after it is
complete, because until then other subtasks may still be
finishing the restored parts, which carry the same subtask index in their names: a subtask
cannot tell them from leftovers by name alone. A subtask *i* of *n* cleans up the names of
old subtasks *j* with ``j % n == i``, so leftovers are also found after a restore at a lower
parallelism.

Part counters keep growing across restores: the counter is in every checkpointed
transaction, and ``open`` also lists the base path for this subtask's part files (restored
state is dealt round-robin, so a subtask does not always get its own old counter back). A
commit never overwrites an existing file.

Without checkpointing nothing is ever finished (as in Flink's streaming mode): the sink logs
a warning when a job ends with data that no checkpoint covered.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from strom.connectors.base import (
    DeliveryGuarantee,
    Sink,
    TwoPhaseCommitSinkWriter,
    WriterContext,
)
from strom.connectors.filesystem.buckets import (
    BucketAssigner,
    BucketContext,
    DateTimeBucketAssigner,
    check_bucket_id,
)
from strom.connectors.filesystem.encoding import Encoder, make_encoder
from strom.connectors.filesystem.policies import (
    DefaultRollingPolicy,
    OutputFileConfig,
    PartFileInfo,
    RollingPolicy,
)
from strom.connectors.filesystem.stores import (
    FsspecStore,
    LocalStore,
    PartRecord,
    PartStore,
    PartWriter,
)
from strom.errors import InvalidJobError
from strom.formats import SerializationSchema

__all__ = ["FileSink", "FileSinkWriter", "make_store"]

log = logging.getLogger("strom.connectors.filesystem")

FileTxn = dict[str, Any]
"""``{"subtask": i, "next_counter": n, "parts": [PartRecord, ...]}``: plain, picklable data."""


def make_store(base_path: str, storage_options: dict[str, Any] | None = None) -> PartStore:
    """The part store for ``base_path`` (a local path or an fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(base_path, **(storage_options or {}))
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if isinstance(fs, LocalFileSystem):
        return LocalStore(base_path, root)
    if {"s3", "s3a"} & set(protocols):
        from strom.connectors.filesystem.s3 import S3Store

        return S3Store(base_path, fs, root)
    return FsspecStore(base_path, fs, root)


class FileSink(Sink[Any]):
    """Rolling part files in bucket directories below ``base_path``; exactly-once with
    checkpointing. See ``docs/connectors/filesystem.md``.

    Args:
        base_path: a local path or an fsspec URL (``s3://bucket/prefix``, ``hdfs://...``).
        encoder: a ``SerializationSchema`` or a callable ``element -> bytes``; by default
            ``str(element)`` in UTF-8 (``SimpleStringSchema``).
        record_delimiter: written after every encoded record (``b""`` for none).
        bucket_assigner: a ``BucketAssigner`` or callable ``(element, context) -> str``;
            ``DateTimeBucketAssigner()`` (hourly directories, UTC) by default.
        rolling_policy: when to roll between checkpoints; ``DefaultRollingPolicy()`` by
            default. Parts always roll at checkpoints.
        output_file_config: part file prefix and suffix.
        storage_options: passed to the fsspec filesystem (credentials, ``client_kwargs``).
    """

    supported_guarantees: ClassVar[frozenset[DeliveryGuarantee]] = frozenset(
        {DeliveryGuarantee.EXACTLY_ONCE}
    )

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        *,
        encoder: SerializationSchema[Any] | Callable[[Any], bytes] | None = None,
        record_delimiter: bytes = b"\n",
        bucket_assigner: BucketAssigner | Callable[[Any, BucketContext], str] | None = None,
        rolling_policy: RollingPolicy | None = None,
        output_file_config: OutputFileConfig | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        path = os.fspath(base_path)
        if not isinstance(path, str) or not path:
            raise InvalidJobError(f"FileSink: base_path must be a non-empty path: {base_path!r}")
        self.base_path = path
        try:
            self.encoder: Encoder = make_encoder(encoder)
        except TypeError as e:
            raise InvalidJobError(str(e)) from None
        if not isinstance(record_delimiter, bytes):
            raise InvalidJobError(f"FileSink: record_delimiter must be bytes: {record_delimiter!r}")
        self.record_delimiter = record_delimiter
        assigner = bucket_assigner if bucket_assigner is not None else DateTimeBucketAssigner()
        if isinstance(assigner, BucketAssigner):
            self.assign_bucket: Callable[[Any, BucketContext], str] = assigner.get_bucket_id
        elif callable(assigner):
            self.assign_bucket = assigner
        else:
            raise InvalidJobError(
                f"FileSink: bucket_assigner must be a BucketAssigner or a callable: {assigner!r}"
            )
        self.bucket_assigner = assigner
        policy = rolling_policy if rolling_policy is not None else DefaultRollingPolicy()
        if not isinstance(policy, RollingPolicy):
            raise InvalidJobError(f"FileSink: rolling_policy must be a RollingPolicy: {policy!r}")
        self.rolling_policy = policy
        config = output_file_config if output_file_config is not None else OutputFileConfig()
        if not isinstance(config, OutputFileConfig):
            raise InvalidJobError(
                f"FileSink: output_file_config must be an OutputFileConfig: {config!r}"
            )
        self.output_file_config = config
        self.storage_options = dict(storage_options or {})
        protocol = fsspec.utils.get_protocol(path)
        try:  # an unknown protocol or a missing client library fails when the job is built
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as e:
            raise InvalidJobError(f"FileSink: cannot write to {path!r}: {e}") from e

    def create_writer(self, ctx: WriterContext) -> FileSinkWriter:
        return FileSinkWriter(self, ctx)

    def describe(self) -> str:
        return f"FileSink ({self.base_path})"


class _OpenPart:
    __slots__ = ("info", "writer")

    def __init__(self, writer: PartWriter, info: PartFileInfo) -> None:
        self.writer = writer
        self.info = info


class FileSinkWriter(TwoPhaseCommitSinkWriter[Any, FileTxn]):
    """One subtask of a ``FileSink``; a transaction is the parts rolled between checkpoints."""

    def __init__(self, sink: FileSink, ctx: WriterContext) -> None:
        super().__init__()
        self._sink = sink
        self._subtask = ctx.subtask_index
        self._parallelism = ctx.parallelism
        self._attempt = ctx.attempt
        self._clock = ctx.processing_time
        self._config = sink.output_file_config
        self._policy = sink.rolling_policy
        self._origin = f"{sink.describe()} subtask {ctx.subtask_index}"
        self._open_parts: dict[str, _OpenPart] = {}
        self._buckets: dict[str, str] = {}  # bucket id as assigned -> checked and normalised
        self._context = BucketContext(ctx.processing_time)
        self._counter = 0
        self._store: PartStore | None = None
        self._active: FileTxn | None = None
        self._cleanup_due = False
        self._ended = False
        self._covered_end = False
        prefix, suffix = re.escape(self._config.part_prefix), re.escape(self._config.part_suffix)
        self._finished_re = re.compile(rf"{prefix}-(\d+)-(\d+){suffix}")
        self._in_progress_re = re.compile(rf"\.{prefix}-(\d+)-(\d+){suffix}\.inprogress\.\w+")
        metrics = ctx.metrics
        self._parts_committed = metrics.counter("part_files_committed")
        self._bytes_written = metrics.counter("bytes_written")

    @property
    def store(self) -> PartStore:
        if self._store is None:
            raise RuntimeError("FileSink writer used before open()")
        return self._store

    @property
    def next_counter(self) -> int:
        """The counter the next part file of this subtask gets."""
        return self._counter

    # -- lifecycle ------------------------------------------------------------------------
    def open(self, restored_state: list[Any] | None) -> None:
        store = make_store(self._sink.base_path, self._sink.storage_options)
        store.prepare()
        self._store = store
        self._sink.encoder.open()
        counter = 0
        for entry in restored_state or []:
            txn = entry[1] if isinstance(entry, tuple | list) and len(entry) == 2 else None
            if isinstance(txn, dict) and txn.get("subtask") == self._subtask:
                counter = max(counter, int(txn.get("next_counter", 0)))
        for found in store.list_parts():
            parsed = self._parse(found.name)
            if parsed is not None and parsed[0] == self._subtask:
                counter = max(counter, parsed[1] + 1)
        self._counter = counter
        super().open(restored_state)

    def abort_lingering(self, restored: list[tuple[int, FileTxn]] | None) -> None:
        # Deferred to the first completed checkpoint: by then every subtask has opened, i.e.
        # finished the restored parts it was dealt (see the module docstring). A restart that
        # found no completed checkpoint starts afresh, but the failed attempt left parts too.
        self._cleanup_due = restored is not None or self._attempt > 0

    def flush(self, end_of_input: bool) -> None:
        if end_of_input:
            self._ended = True

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        state = super().snapshot_state(checkpoint_id)
        self._covered_end = self._ended
        return state

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        super().notify_checkpoint_complete(checkpoint_id)
        if self._cleanup_due:
            self._cleanup_due = False
            self._remove_leftovers()

    def close(self) -> None:
        txn = self.current_transaction
        unfinished = txn is not None and (self._open_parts or txn["parts"])
        if self._ended and not self._covered_end and unfinished:
            log.warning(
                "%s: closed after the end of input without a checkpoint covering its last "
                "records, so their part files are discarded; the FileSink finishes part files "
                "only on completed checkpoints (is checkpointing enabled?)",
                self._origin,
            )
        super().close()

    # -- transactions ---------------------------------------------------------------------
    def begin_transaction(self) -> FileTxn:
        txn: FileTxn = {"subtask": self._subtask, "next_counter": self._counter, "parts": []}
        self._active = txn  # the transaction the open parts belong to
        return txn

    def write_to_transaction(
        self, txn: FileTxn, values: list[Any], timestamps: list[int] | None
    ) -> None:
        now = self._clock()
        policy, open_parts = self._policy, self._open_parts
        for bucket in [
            b for b, p in open_parts.items() if policy.should_roll_on_processing_time(p.info, now)
        ]:
            self._roll(txn, bucket)
        encoded = self._sink.encoder.encode(values, self._sink.record_delimiter, self._origin)
        context, assign = self._context, self._sink.assign_bucket
        context.timestamp = None
        written = 0
        for i, (value, data) in enumerate(zip(values, encoded, strict=True)):
            if timestamps is not None:
                context.timestamp = timestamps[i]
            bucket = self._bucket_of(assign(value, context), value)
            part = open_parts.get(bucket)
            if part is not None and policy.should_roll_on_event(part.info, len(data)):
                self._roll(txn, bucket)
                part = None
            if part is None:
                part = self._new_part(bucket, now)
            part.writer.write(data)
            info = part.info
            info.size += len(data)
            info.last_updated_at = now
            written += len(data)
        self._bytes_written.inc(written)

    def pre_commit(self, txn: FileTxn) -> None:
        for bucket in list(self._open_parts):
            self._roll(txn, bucket)
        txn["next_counter"] = self._counter

    def commit(self, txn: FileTxn) -> None:
        self._commit(txn, recovering=False)

    def recover_and_commit(self, txn: FileTxn) -> None:
        if not isinstance(txn, dict) or not isinstance(txn.get("parts"), list):
            raise ValueError(f"{self._origin}: restored state is not FileSink state: {txn!r:.200}")
        self._commit(txn, recovering=True)

    def _commit(self, txn: FileTxn, *, recovering: bool) -> None:
        store = self.store
        for record in txn["parts"]:
            store.commit(record, recovering=recovering)
            self._parts_committed.inc()

    def abort(self, txn: FileTxn) -> None:
        if txn is self._active:
            parts, self._open_parts = self._open_parts, {}
            for part in parts.values():
                part.writer.discard()
        store = self.store
        for record in txn["parts"]:
            store.abort(record)

    # -- parts ----------------------------------------------------------------------------
    def _bucket_of(self, assigned: Any, value: Any) -> str:
        bucket = self._buckets.get(assigned) if isinstance(assigned, str) else None
        if bucket is None:
            bucket = check_bucket_id(assigned, value)
            if len(self._buckets) > 10_000:  # bounded: time-based ids never come back
                self._buckets.clear()
            self._buckets[assigned] = bucket
        return bucket

    def _new_part(self, bucket: str, now: int) -> _OpenPart:
        counter = self._counter
        self._counter += 1
        config = self._config
        writer = self.store.open_part(
            bucket,
            config.finished_name(self._subtask, counter),
            config.in_progress_name(self._subtask, counter, uuid.uuid4().hex),
        )
        part = _OpenPart(writer, PartFileInfo(bucket, 0, now, now))
        self._open_parts[bucket] = part
        return part

    def _roll(self, txn: FileTxn, bucket: str) -> None:
        part = self._open_parts.pop(bucket)
        txn["parts"].append(part.writer.close())

    def _parse(self, name: str) -> tuple[int, int] | None:
        m = self._in_progress_re.fullmatch(name) or self._finished_re.fullmatch(name)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def _remove_leftovers(self) -> None:
        """Abort in-progress parts of old subtasks this subtask covers that no live
        transaction of this attempt owns: the failed attempt's leftovers."""
        store = self.store
        live: set[str] = set()
        txns = [t for _, t in self.pending_transactions]
        current = self.current_transaction
        if current is not None:
            txns.append(current)
        records: list[PartRecord] = [r for t in txns for r in t["parts"]]
        live.update(store.identity(r) for r in records)
        live.update(p.writer.identity for p in self._open_parts.values())
        removed = 0
        for found in store.list_parts():
            if not found.in_progress:
                continue
            parsed = self._parse(found.name)
            if parsed is None or parsed[0] % self._parallelism != self._subtask:
                continue
            if store.identity(found.handle) in live:
                continue
            store.abort(found.handle)
            removed += 1
        if removed:
            log.info("%s: removed %d part file(s) a failed attempt left", self._origin, removed)
