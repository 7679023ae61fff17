"""The driver protocol. A third driver (a real DWS agent, say) implements these two types.

`freeze` makes the cluster refuse writes and returns a handle; the handle copies the
frozen cluster into a snapshot directory and is then `release`d. `restore` makes a new
cluster from a verified snapshot directory. All calls block; the workflow runs them in
worker threads. Every snapshot directory holds a `manifest.json` (size and sha256 of each
file, plus what the driver knows: server version, row counts)."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MANIFEST = "manifest.json"


class DriverError(Exception):
    """The cluster could not be frozen, copied or restored; the message is the reason."""


@dataclass(frozen=True)
class SnapshotFiles:
    directory: Path
    size_bytes: int
    sha256: str
    warning: str | None = None


class FrozenCluster(Protocol):
    def copy_to(self, directory: Path) -> SnapshotFiles: ...

    def release(self) -> None: ...


class ClusterDriver(Protocol):
    name: str

    def freeze(self, target: str) -> FrozenCluster: ...

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
