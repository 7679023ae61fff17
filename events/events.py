"""Status events published on `snapshot.events` (SPEC.md, "Events"): the `data` of each.

Each event's fields are defined here once. They are plain standard-library dataclasses so
that the domain's own event classes can inherit them (`services/snapshots/domain.py`:
`class ClusterLocked(Cluster.Event, events.ClusterLocked)`), which is what ties the stored
events to the published ones; pydantic validates them at the edges (`events.codec`) and
generates `schemas/` from them. Only the fields below ever leave the service: a domain
event's own extra fields (a `sha256`, the `command_id` that becomes `correlationid`) stay in
the store."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from events.vocabulary import (ClusterStatus, DeletionReason, DriverName, RejectionCode,
                               SnapshotType, TaskStatus)


@dataclass(frozen=True, kw_only=True)
class Event:
    cluster_name: str


@dataclass(frozen=True, kw_only=True)
class SnapshotEvent(Event):
    snapshot_name: str


@dataclass(frozen=True, kw_only=True)
class ClusterRegistered(Event):
    driver: DriverName
    target: str
    status: ClusterStatus


@dataclass(frozen=True, kw_only=True)
class ClusterStatusChanged(Event):
    status: ClusterStatus


@dataclass(frozen=True, kw_only=True)
class ClusterRestarted(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class SnapshotStarted(SnapshotEvent):
    description: str
    snapshot_type: SnapshotType
    #: Days the snapshot is kept from its start, then expires (deleted, reason `expired`);
    #: -1: forever. An Automated one: its policy's keep_days when it was taken.
    retention_days: int = -1
    #: An online snapshot (PostgreSQL): read-only only until the dump's snapshot is taken.
    online: bool = False


@dataclass(frozen=True, kw_only=True)
class ClusterLocked(SnapshotEvent):
    status: Literal[ClusterStatus.UNAVAILABLE]
    task_status: Literal[TaskStatus.CREATING_SNAPSHOT]


@dataclass(frozen=True, kw_only=True)
class ClusterReadOnly(SnapshotEvent):
    status: Literal[ClusterStatus.READ_ONLY]


@dataclass(frozen=True, kw_only=True)
class SnapshotCompleted(SnapshotEvent):
    size_bytes: int
    started_at: datetime
    finished_at: datetime
    warning: str | None = None
    #: The snapshot repository holding its files: `local` or `s3://bucket/prefix`.
    repository: str = "local"


@dataclass(frozen=True, kw_only=True)
class SnapshotFailed(SnapshotEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class ClusterUnlocked(SnapshotEvent):
    status: ClusterStatus
    #: Still `Creating snapshot` when an online snapshot unlocks the cluster before its
    #: outcome: the task ends with its SnapshotCompleted or SnapshotFailed.
    task_status: Literal[TaskStatus.CREATING_SNAPSHOT] | None = None


@dataclass(frozen=True, kw_only=True)
class SnapshotDeleted(SnapshotEvent):
    #: `requested` (a user's DeleteSnapshotRequested) or `expired` (retention).
    reason: DeletionReason = DeletionReason.REQUESTED


@dataclass(frozen=True, kw_only=True)
class SnapshotPolicySet(Event):
    schedule: str
    keep_days: int


@dataclass(frozen=True, kw_only=True)
class SnapshotPolicyRemoved(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class ScheduledSnapshotSkipped(Event):
    #: The slot's time, ISO 8601 in UTC.
    slot: str
    #: The rejection code a manual snapshot would have got: `snapshot_in_progress`,
    #: `cluster_not_ready` or `duplicate_snapshot_name`.
    reason: str


@dataclass(frozen=True, kw_only=True)
class SnapshotCancelled(SnapshotEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class SnapshotProgress(SnapshotEvent):
    """Telemetry of a running copy: published straight to the topic, never stored (so never
    in `/history`, and a lost one is not sent again). `bytes_total` is the driver's
    estimate (None when it cannot tell); `percent` and `eta_seconds` are None without it."""
    bytes_done: int
    bytes_total: int | None
    percent: float | None
    bytes_per_second: float
    eta_seconds: float | None


@dataclass(frozen=True, kw_only=True)
class RestoreStarted(SnapshotEvent):
    target_cluster_name: str


@dataclass(frozen=True, kw_only=True)
class RestoreCompleted(SnapshotEvent):
    target_cluster_name: str


@dataclass(frozen=True, kw_only=True)
class RestoreFailed(SnapshotEvent):
    target_cluster_name: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class SnapshotCopyStarted(SnapshotEvent):
    target_repository: str


@dataclass(frozen=True, kw_only=True)
class SnapshotCopied(SnapshotEvent):
    target_repository: str
    size_bytes: int


@dataclass(frozen=True, kw_only=True)
class SnapshotCopyFailed(SnapshotEvent):
    target_repository: str
    reason: str


@dataclass(frozen=True, kw_only=True)
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
        SnapshotCancelled,
        SnapshotProgress,
        RestoreStarted,
        RestoreCompleted,
        RestoreFailed,
        SnapshotCopyStarted,
        SnapshotCopied,
        SnapshotCopyFailed,
        CommandRejected,
        SnapshotPolicySet,
        SnapshotPolicyRemoved,
        ScheduledSnapshotSkipped,
    )
}

#: Events published straight to the topic as telemetry, never stored (`SnapshotProgress`).
TELEMETRY_EVENTS = frozenset({"SnapshotProgress"})
