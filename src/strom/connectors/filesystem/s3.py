"""Part files on S3 (and S3-compatible stores) for the rolling ``FileSink``: exactly-once
without rename, through multipart uploads.

S3 has no atomic rename (``mv`` is copy + delete), so a part file is written as a multipart
upload to its *final* key, which stays invisible until the upload is completed:

* in progress: records are buffered in memory and uploaded as parts of at least 5 MiB (S3's
  minimum for every part but the last); the upload is started with the first part;
* pre-commit (``PartWriter.close``, at a checkpoint or a roll): the rest of the buffer is
  uploaded as the last part; ``(bucket, key, upload_id, parts and ETags, size)`` go into the
  checkpoint;
* commit: ``CompleteMultipartUpload`` — atomic, the object appears whole. Idempotent: if the
  upload is gone and the object exists with the expected size, it was committed already;
* abort: ``AbortMultipartUpload``.

A restore completes the uploads of its checkpoint; uploads a crashed attempt left open are
found with ``ListMultipartUploads`` under the base prefix and aborted (see ``sink.py`` for
which and when). A bucket lifecycle rule that aborts incomplete multipart uploads after a few
days is a good safety net, but it must be longer than any outage a job should recover from.

Client: s3fs (with aiobotocore), through ``S3FileSystem.call_s3``, rather than boto3. It is
what fsspec users already have for ``s3://`` URLs, it takes the same ``storage_options``
(``key``/``secret``, ``client_kwargs={"endpoint_url": ...}``) as checkpoint storage and every
other fsspec path in strom, and it brings retries and the translation of S3 error codes into
``OSError`` subclasses (``NoSuchUpload``/``NoSuchKey``/``NoSuchBucket`` → ``FileNotFoundError``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from strom.connectors.filesystem.stores import (
    FoundPart,
    PartRecord,
    PartStore,
    PartWriter,
    check_final,
)
from strom.errors import ConnectorError

__all__ = ["S3_MIN_PART_SIZE", "S3Store"]

S3_MIN_PART_SIZE = 5 * 1024 * 1024
"""S3 rejects smaller parts (except the last one of an upload)."""


class S3Store(PartStore):
    def __init__(self, url: str, fs: Any, root: str, *, part_size: int = S3_MIN_PART_SIZE) -> None:
        super().__init__(url)
        self.fs = fs
        bucket, key, _ = fs.split_path(root)
        self.bucket: str = bucket
        self.prefix: str = key.strip("/") + "/" if key.strip("/") else ""
        self.part_size = part_size

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self.fs.call_s3(method, Bucket=self.bucket, **kwargs)

    def prepare(self) -> None:
        try:
            self._call("head_bucket")
        except FileNotFoundError as e:
            raise ConnectorError(
                f"FileSink: bucket {self.bucket!r} of base path {self.url!r} does not exist"
            ) from e
        except OSError as e:
            raise ConnectorError(f"FileSink: cannot write to base path {self.url!r}: {e}") from e

    def open_part(self, bucket_id: str, final_name: str, in_progress_name: str) -> PartWriter:
        key = self.prefix + (posixpath.join(bucket_id, final_name) if bucket_id else final_name)
        return _S3Part(self, key)

    def _head_size(self, key: str) -> int | None:
        try:
            return int(self._call("head_object", Key=key)["ContentLength"])
        except FileNotFoundError:
            return None

    def _upload_open(self, key: str, upload_id: str) -> bool:
        try:
            self._call("list_parts", Key=key, UploadId=upload_id, MaxParts=1)
        except FileNotFoundError:
            return False
        return True

    def commit(self, record: PartRecord, *, recovering: bool) -> None:
        key, upload_id = record["key"], record["upload_id"]
        where = f"s3://{self.bucket}/{key}"
        size = self._head_size(key)
        if size is not None:
            # CompleteMultipartUpload would silently replace the object: only an upload that
            # is gone already (completed by an earlier commit) may have left it there.
            if self._upload_open(key, upload_id):
                raise ConnectorError(
                    f"FileSink: cannot commit {where}: the object already exists (another job "
                    "or sink writing part files with the same names under the same prefix?)"
                )
            check_final(self, where, size, record["size"], recovering)
            return
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in record["parts"]]
        try:
            self._call(
                "complete_multipart_upload",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except FileNotFoundError:
            # Completed meanwhile (or long ago and since deleted), or aborted: look again.
            check_final(self, where, self._head_size(key), record["size"], recovering)

    def abort(self, record: PartRecord) -> None:
        try:
            self._call("abort_multipart_upload", Key=record["key"], UploadId=record["upload_id"])
        except FileNotFoundError:
            pass

    def list_parts(self) -> Iterator[FoundPart]:
        token: dict[str, Any] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=self.prefix, **token)
            for obj in page.get("Contents", []):
                yield FoundPart(posixpath.basename(obj["Key"]), False, {})
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        markers: dict[str, Any] = {}
        while True:
            page = self._call("list_multipart_uploads", Prefix=self.prefix, **markers)
            for up in page.get("Uploads", []):
                handle = {"key": up["Key"], "upload_id": up["UploadId"]}
                yield FoundPart(posixpath.basename(up["Key"]), True, handle)
            if not page.get("IsTruncated"):
                break
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }


class _S3Part(PartWriter):
    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[tuple[int, str]] = []

    @property
    def identity(self) -> str:
        return self._upload_id or ""

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self.store.part_size:
            self._upload_buffer()

    def _upload_buffer(self) -> None:
        store = self.store
        if self._upload_id is None:
            # Started only when the first part is due: a part file that is aborted while
            # still in memory leaves nothing behind on S3.
            reply = store._call("create_multipart_upload", Key=self.key)
            self._upload_id = str(reply["UploadId"])
        number = len(self._parts) + 1
        reply = store._call(
            "upload_part",
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append((number, str(reply["ETag"])))
        self._buffer.clear()

    def close(self) -> PartRecord:
        if self._buffer or not self._parts:
            self._upload_buffer()
        return {
            "key": self.key,
            "upload_id": self._upload_id,
            "parts": list(self._parts),
            "size": self.size,
        }

    def discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            self.store.abort({"key": self.key, "upload_id": self._upload_id})
