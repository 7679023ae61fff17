"""The driver protocol. A third driver (a real DWS agent, say) implements these two types.

`freeze` makes the cluster refuse writes and returns a handle. The handle copies the
frozen cluster into a snapshot directory (`copy_to`, in steps: it can be cancelled
through a `threading.Event` and reports progress), then `release`s it: writes go through
again at once, without waiting for running queries. What a release may leave behind
(the `postgres` driver's pass-through triggers) is removed by `cleanup`, which may raise
`CleanupPending` and is then retried later; the cluster is writable meanwhile.

A process that did not freeze the cluster (a worker restarted after a crash, a
reconciler) works by target: `thaw(target)` lets writes through, `cleanup(target)`
removes the traces, `is_frozen(target)` tells whether writes are refused. All three are
idempotent. `restore` makes a new cluster from a verified snapshot directory.

All calls block; the workflow runs them in worker threads. Every snapshot directory holds
a `manifest.json` (size and sha256 of each file, plus what the driver knows: server
version, row counts)."""

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MANIFEST = "manifest.json"

Progress = Callable[[int, int | None], None]
"""Called as `progress(bytes_done, bytes_total)` from the copying thread while a copy
runs; the total is an estimate, or None when the driver cannot tell. The last call of a
copy that succeeds has `bytes_done == bytes_total`. If it raises, the copy stops."""


class DriverError(Exception):
    """The cluster could not be frozen, copied or restored; the message is the reason."""


class CopyCancelled(DriverError):
    """The copy was cancelled through its event; no partial file is left behind."""


class CleanupPending(DriverError):
    """The cluster is writable, but the driver's traces are still in use by running
    queries; call `cleanup` again later."""


@dataclass(frozen=True)
class SnapshotFiles:
    directory: Path
    size_bytes: int
    sha256: str
    warning: str | None = None


class FrozenCluster(Protocol):
    """A cluster refusing writes, as returned by `ClusterDriver.freeze`."""

    def copy_to(self, directory: Path, cancel: threading.Event | None = None,
                progress: Progress | None = None) -> SnapshotFiles: ...

    # A driver that supports online snapshots (`postgres`) also has
    # `copy_online(directory, cancel, pinned, progress=None)`: the same copy, calling
    # `pinned()` from the copying thread once the copy's data is fixed, after which the
    # caller may release the freeze while the copy goes on.

    def release(self) -> None: ...

    def cleanup(self) -> None: ...

    def close(self) -> None:
        """Let go of the handle without lifting a freeze shared by target (a stale workflow's
        freeze belongs to the next snapshot's); a freeze living in the handle ends."""


class ClusterDriver(Protocol):
    """One kind of cluster: how to freeze, thaw, copy and restore it."""

    name: str

    def freeze(self, target: str) -> FrozenCluster: ...

    def thaw(self, target: str) -> None: ...

    def cleanup(self, target: str) -> None: ...

    def is_frozen(self, target: str) -> bool: ...

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        """Restore a verified snapshot into a new cluster; returns the new target."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, data_file: Path, **facts) -> SnapshotFiles:
    size, digest = data_file.stat().st_size, sha256_of(data_file)
    manifest = {"file": data_file.name, "size_bytes": size, "sha256": digest, **facts}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return SnapshotFiles(directory=directory, size_bytes=size, sha256=digest)


def verify_manifest(directory: Path, expected_sha256: str | None = None) -> Path:
    """The data file, if it matches its manifest (and the digest recorded at completion)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        data_file = directory / Path(manifest["file"]).name
        size, digest = data_file.stat().st_size, sha256_of(data_file)
    except (OSError, ValueError, KeyError) as error:
        raise DriverError(f"snapshot files are missing or unreadable: {error}") from error
    if size != manifest["size_bytes"] or digest != manifest["sha256"] or (
            expected_sha256 and digest != expected_sha256):
        raise DriverError("snapshot files do not match the manifest: refusing to restore")
    return data_file
