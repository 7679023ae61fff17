"""Status events published on `snapshot.events` (SPEC.md, "Events").

The domain records events of the same names; the relay validates each stored event's
attributes through these models, so only the fields below ever leave the service."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from events.commands import ClusterStatus, DriverName

SnapshotStatus = Literal["Creating", "Available", "Failed", "Restoring"]
RejectionCode = Literal[
    "invalid_snapshot_name",
    "invalid_description",
    "duplicate_snapshot_name",
    "unknown_cluster",
    "cluster_not_ready",
    "snapshot_in_progress",
    "secret_in_command",
    "unknown_snapshot",
    "snapshot_not_available",
    "snapshot_busy",
    "duplicate_cluster_name",
    "invalid_command",
    "unknown_command_type",
]


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cluster_name: str


class SnapshotEvent(Event):
    snapshot_name: str


class ClusterRegistered(Event):
    driver: DriverName
    target: str
    status: ClusterStatus


class ClusterStatusChanged(Event):
    status: ClusterStatus


class ClusterRestarted(Event):
    pass


class SnapshotStarted(SnapshotEvent):
    description: str
    snapshot_type: Literal["Manual", "Automated"]


class ClusterLocked(SnapshotEvent):
    status: Literal["Unavailable"]
    task_status: Literal["Creating snapshot"]


class ClusterReadOnly(SnapshotEvent):
    status: Literal["Read-only"]


class SnapshotCompleted(SnapshotEvent):
    size_bytes: int
    started_at: datetime
    finished_at: datetime
    warning: str | None = None


class SnapshotFailed(SnapshotEvent):
    reason: str


class ClusterUnlocked(SnapshotEvent):
    status: ClusterStatus
    task_status: None = None


class SnapshotDeleted(SnapshotEvent):
    pass


class RestoreStarted(SnapshotEvent):
    target_cluster_name: str


class RestoreCompleted(SnapshotEvent):
    target_cluster_name: str


class RestoreFailed(SnapshotEvent):
    target_cluster_name: str
    reason: str


class CommandRejected(Event):
    command_id: str
    command_type: str
    code: RejectionCode
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        ClusterRegistered,
        ClusterStatusChanged,
        ClusterRestarted,
        SnapshotStarted,
        ClusterLocked,
        ClusterReadOnly,
        SnapshotCompleted,
        SnapshotFailed,
        ClusterUnlocked,
        SnapshotDeleted,
        RestoreStarted,
        RestoreCompleted,
        RestoreFailed,
        CommandRejected,
    )
}
