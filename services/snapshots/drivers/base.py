"""The driver protocol. A third driver (a real DWS agent, say) implements these two types.

`freeze` makes the cluster refuse writes and returns a handle; the handle copies the
frozen cluster into the snapshot repository and, whatever happens, `release`s it. All
calls are blocking; the workflow runs them in a worker thread."""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class DriverError(Exception):
    """The cluster could not be frozen or copied; the message is the failure reason."""


@dataclass(frozen=True)
class SnapshotFiles:
    path: Path
    size_bytes: int
    sha256: str
    warning: str | None = None


class FrozenCluster(Protocol):
    def copy_to(self, directory: Path) -> SnapshotFiles: ...

    def release(self) -> None: ...


class ClusterDriver(Protocol):
    name: str

    def freeze(self, target: str) -> FrozenCluster: ...
