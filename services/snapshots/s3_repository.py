"""The `s3://bucket/prefix` snapshot repository: AWS S3, OBS, MinIO or any S3-compatible
store, through boto3.

Endpoint, region and credentials come only from the AWS SDK's own configuration
(`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or the rest of the standard chain: profiles,
instance roles); the service never reads, logs or records them. The URL names the bucket
and prefix only.

Objects: `<prefix>/<cluster>/<snapshot>/<attempt>/<data file>` and `.../manifest.json`.
The data file is a multipart upload: a driver that can stream (`stream_to`: pg_dump's
output, and an online snapshot's `stream_online`: the freeze released once pg_dump holds
its locks) sends its bytes as they are produced, one part (`part_size`) in memory at a time,
the sha256 computed on the way; a driver that needs a file (SQLite's backup API) writes it
into a staging directory first, removed after the upload. The upload is completed, then
the manifest written: no manifest, no snapshot. A copy that fails or is cancelled aborts
its upload; uploads left by a process that died are aborted at the next start
(`abort_uploads`) or when the snapshot's workflow runs again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.snapshots.drivers.base import MANIFEST, FrozenCluster, Progress, SnapshotFiles
from services.snapshots.repository import CHUNK_BYTES, RepositoryError, SnapshotKey, check_cancel, manifest_bytes
from services.snapshots.staging import Staging

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 << 20  # S3's minimum part is 5 MiB (all but the last)
S3_ERRORS = (BotoCoreError, ClientError)


def _reason(error: Exception) -> str:
    return f"S3: {error}"[:500]


class MultipartUpload:
    """One object written part by part; `write` may be called with any sizes."""

    def __init__(self, client, bucket: str, key: str, part_size: int):
        self._client, self._bucket, self._key, self._part_size = client, bucket, key, part_size
        self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._send(bytes(self._buffer[:self._part_size]))
            del self._buffer[:self._part_size]

    def _send(self, body: bytes) -> None:
        number = len(self._parts) + 1
        answer = self._client.upload_part(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                          PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> str:
        if self._buffer or not self._parts:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})
        return self._digest.hexdigest()

    def abort(self) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except S3_ERRORS as error:  # found again by abort_uploads at the next start
            log.warning("cannot abort the upload of %s: %s", self._key, error)


class S3Repository:
    def __init__(self, url: str, staging: Path | Staging, addressing_style: str = "auto",
                 part_size: int = DEFAULT_PART_SIZE):
        self.url = url
        self.bucket, _, prefix = url[len("s3://"):].partition("/")
        self.prefix = prefix.strip("/")
        #: A Path (tests), or this process's own directory under the data directory's staging.
        self._staging_at = staging
        self._part_size = part_size
        self.client = boto3.session.Session().client("s3", config=Config(
            s3={"addressing_style": addressing_style}, retries={"mode": "standard", "max_attempts": 5}))

    @property
    def _staging(self) -> Path:
        return self._staging_at.path() if isinstance(self._staging_at, Staging) else self._staging_at

    def object_key(self, key: SnapshotKey, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, key.path, name) if p)

    def directory(self, key: SnapshotKey) -> Path:
        return self._staging.joinpath(*key.parts)

    def source(self, frozen: FrozenCluster, key: SnapshotKey) -> "_CopyToS3":
        return _CopyToS3(self, frozen, key)

    @contextlib.contextmanager
    def fetched(self, key: SnapshotKey) -> Iterator[Path]:
        self._staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fetched-", dir=self._staging) as name:
            directory = Path(name)
            manifest = self.manifest(key)
            (directory / MANIFEST).write_bytes(manifest_bytes(manifest))
            data_name = Path(str(manifest.get("file", ""))).name
            if not data_name:
                raise RepositoryError(f"the manifest of {self.object_key(key)} names no file")
            with self.open(key, data_name) as stream, (directory / data_name).open("wb") as out:
                shutil.copyfileobj(stream, out, CHUNK_BYTES)
            yield directory

    def manifest(self, key: SnapshotKey) -> dict:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key, MANIFEST))["Body"]
            return json.loads(body.read())
        except self.client.exceptions.NoSuchKey:
            raise RepositoryError(f"{self.url}/{key.path} has no manifest: the snapshot is "
                                  "incomplete or gone") from None
        except (ValueError, *S3_ERRORS) as error:
            raise RepositoryError(_reason(error)) from error

    def open(self, key: SnapshotKey, name: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key, name))["Body"]
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    def upload(self, key: SnapshotKey, name: str) -> MultipartUpload:
        try:
            return MultipartUpload(self.client, self.bucket, self.object_key(key, name), self._part_size)
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    @contextlib.contextmanager
    def uploading(self, key: SnapshotKey, name: str) -> Iterator[MultipartUpload]:
        """An upload aborted if the block fails (or is cancelled); completed by the caller."""
        upload = self.upload(key, name)
        try:
            yield upload
        except BaseException as error:
            upload.abort()
            if isinstance(error, S3_ERRORS):
                raise RepositoryError(_reason(error)) from error
            raise

    def put_stream(self, key: SnapshotKey, name: str, stream: BinaryIO,
                   cancel: threading.Event | None = None) -> tuple[int, str]:
        with self.uploading(key, name) as upload:
            for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
                check_cancel(cancel)
                upload.write(block)
            digest = upload.complete()
        return upload.size, digest

    def put_manifest(self, key: SnapshotKey, manifest: dict) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key, MANIFEST),
                                   Body=manifest_bytes(manifest))
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    def _keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    def _snapshot_key(self, object_key: str) -> SnapshotKey | None:
        relative = object_key[len(self.prefix) + 1:] if self.prefix else object_key
        parts = relative.split("/")  # <cluster>/<snapshot>[/<attempt>]/<file>: no attempt
        return SnapshotKey(*parts[:-1]) if len(parts) in (3, 4) else None  # for older snapshots

    def list(self) -> list[SnapshotKey]:
        try:
            return [key for k in self._keys(self.prefix_of())
                    if k.endswith("/" + MANIFEST) and (key := self._snapshot_key(k))]
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    def prefix_of(self, key: SnapshotKey | None = None) -> str:
        inner = self.object_key(key) if key else self.prefix
        return inner + "/" if inner else ""

    def uploads(self, key: SnapshotKey | None = None) -> list[dict]:
        """Unfinished multipart uploads under the prefix (or one attempt's)."""
        found = []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix_of(key))
        for page in pages:
            found.extend(page.get("Uploads", []))
        return found

    def abort_uploads_of(self, key: SnapshotKey) -> None:
        """Abort the unfinished uploads under the key (a snapshot's: every attempt's)."""
        try:
            for upload in self.uploads(key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    def delete(self, key: SnapshotKey) -> None:
        prefix = self.prefix_of(key)
        self.abort_uploads_of(key)
        try:
            keys = list(self._keys(prefix))
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
            if left := list(self._keys(prefix)):
                raise RepositoryError(f"{len(left)} objects are still under {self.url}/{key.path}")
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error

    def stored_snapshots(self) -> set[tuple[str, str]]:
        """One listing of the prefix: the snapshots any object belongs to."""
        found = set()
        try:
            for object_key in self._keys(self.prefix_of()):
                parts = (object_key[len(self.prefix) + 1:] if self.prefix else object_key).split("/")
                if len(parts) >= 3:  # <cluster>/<snapshot>/[<attempt>/]<file>
                    found.add((parts[0], parts[1]))
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error
        return found

    def abort_uploads(self, writers) -> int:
        aborted = 0
        try:
            uploads = self.uploads()
            if not uploads:
                return 0
            busy = writers()
            for upload in uploads:
                key = self._snapshot_key(upload["Key"])
                if key is not None and (key.cluster_name, key.snapshot_name) in busy:
                    continue
                log.info("aborting the unfinished upload of %s: no workflow writes it", upload["Key"])
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])
                aborted += 1
        except S3_ERRORS as error:
            raise RepositoryError(_reason(error)) from error
        return aborted


class _CopyToS3:
    """A frozen cluster whose `copy_to` stores the snapshot in the S3 repository."""

    def __init__(self, repository: S3Repository, frozen: FrozenCluster, key: SnapshotKey):
        self._repository, self._frozen, self._key = repository, frozen, key

    def copy_to(self, directory: Path, cancel: threading.Event | None = None,
                progress: Progress | None = None) -> SnapshotFiles:
        repository, key = self._repository, self._key
        self._abort_earlier_uploads()
        if hasattr(self._frozen, "stream_to"):
            return self._stream(directory, lambda write: self._frozen.stream_to(write, cancel, progress), cancel)
        try:
            staged = self._frozen.copy_to(directory, cancel, progress)
            facts = json.loads((directory / MANIFEST).read_text())
            name, warning = facts.pop("file"), staged.warning
            with (directory / name).open("rb") as stream:
                size, digest = repository.put_stream(key, name, stream, cancel)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if digest != staged.sha256:
            raise RepositoryError(f"{name} changed while it was uploaded: refusing the snapshot")
        facts.pop("size_bytes", None), facts.pop("sha256", None)
        repository.put_manifest(key, {**facts, "file": name, "size_bytes": size, "sha256": digest})
        return SnapshotFiles(directory=directory, size_bytes=size, sha256=digest, warning=warning)

    def copy_online(self, directory: Path, cancel: threading.Event | None, pinned: Callable[[], None],
                    progress: Progress | None = None) -> SnapshotFiles:
        """An online copy (`postgres`): pg_dump streamed into the upload as for `copy_to`,
        `pinned()` called once its snapshot is held (see `drivers.postgres_online`)."""
        if not hasattr(self._frozen, "stream_online"):
            raise RepositoryError(f"this driver cannot stream an online snapshot to {self._repository.url}")
        self._abort_earlier_uploads()
        return self._stream(directory, lambda write: self._frozen.stream_online(write, cancel, pinned, progress),
                            cancel)

    def _stream(self, directory: Path, stream: Callable[[Callable[[bytes], None]], tuple[dict, str | None]],
                cancel: threading.Event | None) -> SnapshotFiles:
        """`stream(write)` feeds the upload and returns the manifest's facts and warning; the
        upload is completed (or aborted if anything fails), then the manifest written."""
        repository, key, name = self._repository, self._key, self._frozen.stream_name
        with repository.uploading(key, name) as upload:
            facts, warning = stream(upload.write)
            check_cancel(cancel)
            digest = upload.complete()
        repository.put_manifest(key, {**facts, "file": name, "size_bytes": upload.size, "sha256": digest})
        return SnapshotFiles(directory=directory, size_bytes=upload.size, sha256=digest, warning=warning)

    def _abort_earlier_uploads(self) -> None:
        """Uploads of this snapshot's earlier attempts, if a process died writing them."""
        self._repository.abort_uploads_of(SnapshotKey(self._key.cluster_name, self._key.snapshot_name))

    def release(self) -> None:
        self._frozen.release()

    def cleanup(self) -> None:
        self._frozen.cleanup()

    def close(self) -> None:
        self._frozen.close()
