"""Where snapshots are kept: the snapshot repository (`SNAPSHOT_REPOSITORY`).

A snapshot is the files of one workflow attempt, under `<cluster>/<snapshot>/<attempt>/`
(lower-cased names): the driver's data file and `manifest.json` (size and sha256 of the
data file, and what the driver knows), the manifest always written last. Attempts without
a manifest are incomplete: never listed, never restorable. Two kinds:

- `local` (the default): a directory, `<data dir>/snapshots`, written by the drivers
  directly (as before repositories existed);
- `s3://bucket/prefix`: any S3-compatible store (`s3_repository.S3Repository`); the data
  file is streamed there as the driver produces it.

Each completed snapshot records the URL of its repository in `SnapshotCompleted`, so a
restore, a delete or a copy reads it from where it was written, whatever the setting says
today (`Repositories.get`). Every call blocks: the workflow runs them in threads."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from events.vocabulary import name_key
from services.snapshots.drivers.base import MANIFEST, CopyCancelled, DriverError, FrozenCluster
from services.snapshots.staging import Staging

LOCAL = "local"
CHUNK_BYTES = 1 << 20


class RepositoryError(DriverError):
    """The repository could not be read or written; the message is the reason."""


@dataclass(frozen=True)
class SnapshotKey:
    """One attempt's files: `<cluster>/<snapshot>/<attempt>` (no attempt: snapshots taken
    before attempts existed keep their files in the snapshot's directory)."""

    cluster_name: str
    snapshot_name: str
    attempt: str | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        # Both names passed the domain's name rule, so they are safe path components.
        names = (name_key(self.cluster_name), name_key(self.snapshot_name))
        return names + ((self.attempt,) if self.attempt else ())

    @property
    def path(self) -> str:
        return "/".join(self.parts)


class Repository(Protocol):
    url: str

    def directory(self, key: SnapshotKey) -> Path:
        """Where the driver writes the attempt's files (local: the snapshot itself; s3: a
        staging directory for drivers that need a file, emptied after the upload)."""

    def source(self, frozen: FrozenCluster, key: SnapshotKey) -> FrozenCluster:
        """The frozen cluster whose `copy_to(directory(key), ...)` stores the snapshot here."""

    def fetched(self, key: SnapshotKey) -> contextlib.AbstractContextManager[Path]:
        """A directory holding the snapshot's files (s3: downloaded into a temporary one,
        removed on exit), to be verified against the manifest before use."""

    def manifest(self, key: SnapshotKey) -> dict:
        """The attempt's manifest; RepositoryError if it has none (incomplete)."""

    def open(self, key: SnapshotKey, name: str) -> BinaryIO:
        """A stream of one of the attempt's files."""

    def put_stream(self, key: SnapshotKey, name: str, stream: BinaryIO,
                   cancel: threading.Event | None = None) -> tuple[int, str]:
        """Write a file from a stream; returns its size and sha256, computed on the way."""

    def put_manifest(self, key: SnapshotKey, manifest: dict) -> None: ...

    def list(self) -> list[SnapshotKey]:
        """Every complete attempt (with a manifest)."""

    def delete(self, key: SnapshotKey) -> None:
        """Remove the attempt's files (idempotent); raises if something is left."""

    def stored_snapshots(self) -> set[tuple[str, str]]:
        """The lower-cased (cluster, snapshot) pairs with any file here, complete or not
        (the scheduler removes those of deleted snapshots)."""

    def abort_uploads(self, writers: Callable[[], set[tuple[str, str]]]) -> int:
        """Abort the unfinished uploads of snapshots that are not among `writers()` (the
        lower-cased (cluster, snapshot) pairs being written, read after the listing, so an
        upload that starts meanwhile is never taken for an orphan); how many."""


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()


class LocalRepository:
    """Today's directory layout: the drivers write the files in place."""

    def __init__(self, root: Path, url: str = LOCAL):
        self.root = root
        self.url = url

    def directory(self, key: SnapshotKey) -> Path:
        return self.root.joinpath(*key.parts)

    def source(self, frozen: FrozenCluster, key: SnapshotKey) -> FrozenCluster:
        return frozen

    @contextlib.contextmanager
    def fetched(self, key: SnapshotKey) -> Iterator[Path]:
        yield self.directory(key)

    def manifest(self, key: SnapshotKey) -> dict:
        try:
            return json.loads((self.directory(key) / MANIFEST).read_text())
        except (OSError, ValueError) as error:
            raise RepositoryError(f"snapshot {key.path} has no readable manifest: {error}") from error

    def open(self, key: SnapshotKey, name: str) -> BinaryIO:
        try:
            return (self.directory(key) / Path(name).name).open("rb")
        except OSError as error:
            raise RepositoryError(f"cannot read {key.path}/{name}: {error}") from error

    def put_stream(self, key: SnapshotKey, name: str, stream: BinaryIO,
                   cancel: threading.Event | None = None) -> tuple[int, str]:
        directory = self.directory(key)
        directory.mkdir(parents=True, exist_ok=True)
        digest, size, path = hashlib.sha256(), 0, directory / Path(name).name
        try:
            with path.open("wb") as out:
                for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
                    check_cancel(cancel)
                    out.write(block)
                    digest.update(block)
                    size += len(block)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def put_manifest(self, key: SnapshotKey, manifest: dict) -> None:
        (self.directory(key) / MANIFEST).write_bytes(manifest_bytes(manifest))

    def list(self) -> list[SnapshotKey]:
        found = []
        for manifest in sorted(self.root.glob(f"*/*/*/{MANIFEST}")) + sorted(self.root.glob(f"*/*/{MANIFEST}")):
            parts = manifest.relative_to(self.root).parts[:-1]
            found.append(SnapshotKey(*parts))
        return found

    def delete(self, key: SnapshotKey) -> None:
        directory = self.directory(key)
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            raise RepositoryError(f"{directory} is still there")

    def stored_snapshots(self) -> set[tuple[str, str]]:
        return {(path.parent.name, path.name) for path in self.root.glob("*/*") if path.is_dir()}

    def abort_uploads(self, writers) -> int:
        return 0  # a local copy that dies leaves no manifest: its attempt is deleted on failure


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CopyCancelled("the copy was cancelled")


class Repositories:
    """The repository snapshots are written to (`SNAPSHOT_REPOSITORY`), the copy targets
    (`SNAPSHOT_COPY_TARGETS`), and any repository a recorded snapshot names."""

    def __init__(self, default: Repository, local: LocalRepository, staging: Path | Staging,
                 copy_targets: tuple[str, ...] = (), s3_options: dict | None = None):
        self.default = default
        self._by_url: dict[str, Repository] = {LOCAL: local, default.url: default}
        #: Where S3 repositories stage files: this process's own directory (staging.py).
        self.staging = staging if isinstance(staging, Staging) else Staging(staging)
        self.copy_targets = tuple(normalized_url(url) for url in copy_targets)
        self._s3_options = s3_options or {}
        self._lock = threading.Lock()

    @classmethod
    def local_only(cls, root: Path) -> "Repositories":
        local = LocalRepository(root)
        return cls(local, local, root.parent / "staging")

    @classmethod
    def from_settings(cls, settings) -> "Repositories":
        local = LocalRepository(settings.snapshot_repository)
        staging = Staging(settings.data_dir / "staging")
        options = {"addressing_style": settings.s3_addressing_style,
                   "part_size": settings.s3_part_size_bytes}
        url = normalized_url(settings.repository)
        default = local if url == LOCAL else open_s3(url, staging, options)
        return cls(default, local, staging, cls.copy_targets_of(settings), options)

    @staticmethod
    def copy_targets_of(settings) -> tuple[str, ...]:
        """SNAPSHOT_COPY_TARGETS, normalized; a bad entry stops the part at start."""
        return tuple(normalized_url(t) for t in (settings.copy_targets or "").split(",") if t.strip())

    def get(self, url: str | None) -> Repository:
        """The repository a snapshot names (None: one taken before repositories: local)."""
        url = normalized_url(url or LOCAL)
        with self._lock:
            if url not in self._by_url:
                self._by_url[url] = open_s3(url, self.staging, self._s3_options)
            return self._by_url[url]

    def allows_copy_to(self, url: str) -> bool:
        try:
            return normalized_url(url) in self.copy_targets
        except RepositoryError:
            return False


def check_repository_url(url: str) -> str:
    """A repository URL a command names, normalized: `secret_in_command` if it carries a user
    part (credentials come from the AWS SDK's configuration), else `target_not_allowed`
    unless it is `local` or s3://bucket/prefix. The API and the application both check."""
    from services.snapshots.rules import SecretInCommand
    from services.snapshots.targets import TargetNotAllowed

    if "@" in url.partition("://")[2].partition("/")[0]:
        raise SecretInCommand("a repository URL must not carry credentials: the service takes "
                              "them from the AWS SDK's configuration")
    try:
        return normalized_url(url)
    except RepositoryError as error:
        raise TargetNotAllowed(str(error)) from None


def normalized_url(url: str) -> str:
    """`local`, or `s3://bucket/prefix` without a trailing slash; RepositoryError otherwise."""
    url = url.strip()
    if url == LOCAL:
        return url
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0] or any(c in url for c in "?#@ \\"):
        # The URL is not quoted: what makes it wrong may be a credential (user:key@, ?key=).
        raise RepositoryError("not a repository URL: `local` or s3://bucket/prefix, with no user, "
                              "query or fragment (credentials come from the AWS SDK's configuration)")
    return url.rstrip("/")


def open_s3(url: str, staging: Path | Staging, options: dict) -> Repository:
    from services.snapshots.s3_repository import S3Repository

    return S3Repository(url, staging, **options)


def copy_snapshot(source: Repository, destination: Repository, key: SnapshotKey, sha256: str,
                  cancel: threading.Event | None = None) -> int:
    """Copy an attempt's files; the data file is read back at the destination and must
    have the sha256 recorded at completion before the manifest is written. Its size."""
    manifest = source.manifest(key)
    name = Path(str(manifest.get("file", ""))).name
    if manifest.get("sha256") != sha256 or not name:
        raise RepositoryError(f"the manifest in {source.url} does not match the snapshot: refusing to copy")
    with source.open(key, name) as stream:
        size, sent = destination.put_stream(key, name, stream, cancel)
    digest = hashlib.sha256()
    with destination.open(key, name) as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            check_cancel(cancel)
            digest.update(block)
    if sent != sha256 or digest.hexdigest() != sha256:
        raise RepositoryError(f"the copy in {destination.url} does not match the snapshot's sha256")
    destination.put_manifest(key, manifest)
    return size
