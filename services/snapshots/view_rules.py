"""How each published event changes a row of the views: one definition, applied as SQL by
the live projection (`projection.py`) and in memory by replay's fold (`fold.py`).

A rule takes the event's `data` and the event (its `time` and `sequence`) and returns its
`RowChange`s, applied in order; every event also adds one row to the history (`projection.history_row`).
A published type with no row to change is listed in `HISTORY_ONLY`: the fold refuses a
type it finds in neither (a new event type must say what it does to the views)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from events.vocabulary import SnapshotStatus, name_key

INSERT, UPDATE, DELETE = "insert", "update", "delete"


@dataclass(frozen=True, slots=True)
class RowChange:
    table: str  # "snapshots" or "clusters": the attribute of `views.ViewTables`
    action: str  # INSERT (a new row), UPDATE (the row with this key, if any), DELETE
    key: str
    values: dict
    #: (table, key, column): made only if that row exists and its column is true.
    only_if: tuple[str, str, str] | None = None


def cluster_registered(data, event) -> tuple[RowChange, ...]:
    return _one("clusters", INSERT, name_key(data["cluster_name"]), dict(
        name=data["cluster_name"], status=data["status"], task_status=None,
        driver=data["driver"], target=data["target"]))


def cluster_status_changes(data, event) -> tuple[RowChange, ...]:
    values = {"status": data["status"]}
    if "task_status" in data:  # set by ClusterLocked, cleared by ClusterUnlocked
        values["task_status"] = data["task_status"]
    return _one("clusters", UPDATE, name_key(data["cluster_name"]), values)


def policy_changes(data, event) -> tuple[RowChange, ...]:
    policy = {"schedule": data["schedule"], "keep_days": data["keep_days"]} if "schedule" in data else None
    return _one("clusters", UPDATE, name_key(data["cluster_name"]), {"policy": policy})


def snapshot_started(data, event) -> tuple[RowChange, ...]:
    return _one("snapshots", INSERT, name_key(data["snapshot_name"]), dict(
        name=data["snapshot_name"], cluster_name=data["cluster_name"], status=SnapshotStatus.CREATING,
        snapshot_type=data["snapshot_type"], description=data["description"],
        started_at=event.time, sequence=int(event.sequence),
        retention_days=data.get("retention_days", -1), online=data.get("online", False)))


def snapshot_completed(data, event) -> tuple[RowChange, ...]:
    return _snapshot(data, status=SnapshotStatus.AVAILABLE, size_bytes=data["size_bytes"],
                     started_at=datetime.fromisoformat(data["started_at"]),
                     finished_at=datetime.fromisoformat(data["finished_at"]),
                     warning=data.get("warning"), repository=data.get("repository", "local"),
                     progress=None) + _end_online_task(data)


def snapshot_failed(data, event) -> tuple[RowChange, ...]:
    return _snapshot(data, status=SnapshotStatus.FAILED, failure_reason=data["reason"],
                     finished_at=event.time, progress=None) + _end_online_task(data)


def snapshot_cancelled(data, event) -> tuple[RowChange, ...]:
    return _snapshot(data, status=SnapshotStatus.CANCELLED, failure_reason=data["reason"],
                     finished_at=event.time, progress=None) + _end_online_task(data)


def _end_online_task(data) -> tuple[RowChange, ...]:
    """An online snapshot's outcome comes after its ClusterUnlocked: it ends the task."""
    return (RowChange("clusters", UPDATE, name_key(data["cluster_name"]), {"task_status": None},
                      only_if=("snapshots", name_key(data["snapshot_name"]), "online")),)


def snapshot_deleted(data, event) -> tuple[RowChange, ...]:
    return _one("snapshots", DELETE, name_key(data["snapshot_name"]), {})


def snapshot_status_is(status: str) -> Callable:
    def rule(data, event) -> tuple[RowChange, ...]:
        return _snapshot(data, status=status)
    return rule


def _snapshot(data, **values) -> tuple[RowChange, ...]:
    return _one("snapshots", UPDATE, name_key(data["snapshot_name"]), values)


def _one(*change) -> tuple[RowChange, ...]:
    return (RowChange(*change),)


RULES: dict[str, Callable[..., tuple[RowChange, ...]]] = {
    "ClusterRegistered": cluster_registered,
    "ClusterStatusChanged": cluster_status_changes,
    "ClusterLocked": cluster_status_changes,
    "ClusterReadOnly": cluster_status_changes,
    "ClusterUnlocked": cluster_status_changes,
    "SnapshotStarted": snapshot_started,
    "SnapshotCompleted": snapshot_completed,
    "SnapshotFailed": snapshot_failed,
    "SnapshotDeleted": snapshot_deleted,
    "SnapshotCancelled": snapshot_cancelled,
    "RestoreStarted": snapshot_status_is(SnapshotStatus.RESTORING),
    "RestoreCompleted": snapshot_status_is(SnapshotStatus.AVAILABLE),
    "RestoreFailed": snapshot_status_is(SnapshotStatus.AVAILABLE),
    "SnapshotPolicySet": policy_changes,
    "SnapshotPolicyRemoved": policy_changes,
}

#: Published types that only add a history row.
#: (A snapshot's copies are read from its history: `views.COPY_STATUS`.)
HISTORY_ONLY = frozenset({"ClusterRestarted", "CommandRejected", "ScheduledSnapshotSkipped",
                          "SnapshotCopyStarted", "SnapshotCopied", "SnapshotCopyFailed"})
