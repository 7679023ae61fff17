"""The aggregates. Imports only the standard library, eventsourcing and `rules`.

Event names are the published ones (SPEC.md), so the relay can publish a stored event by
its class name; each event carries `cluster_name` (the Kafka key) and `command_id` (the
`correlationid`)."""

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.snapshots.rules import (  # noqa: F401 - the domain's published names
    CLUSTER_NAME, FORBIDDEN_IN_DESCRIPTION, MAX_DESCRIPTION, SNAPSHOT_NAME, ClusterNotReady,
    CommandNotAccepted, DuplicateClusterName, DuplicateSnapshotName, InvalidCommand,
    InvalidDescription, InvalidSnapshotName, SecretInCommand, SnapshotBusy, SnapshotInProgress,
    SnapshotNotAvailable, UnknownCluster, UnknownSnapshot, check_cluster_name, check_description,
    check_no_secret, check_snapshot_name)

SNAPSHOT_ALLOWED_STATUSES = ("Available", "Read-only", "Low performance")
CREATING_SNAPSHOT = "Creating snapshot"
_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dws-snapshots")


def cluster_id(name: str) -> UUID:
    return uuid5(_NAMESPACE, "cluster:" + name.lower())


def snapshot_id(name: str) -> UUID:
    return uuid5(_NAMESPACE, "snapshot:" + name.lower())


def command_record_id(command_id: str) -> UUID:
    return uuid5(_NAMESPACE, "command:" + command_id)


class Cluster(Aggregate):
    """A warehouse cluster as the control plane sees it: status, task status, lock."""

    @staticmethod
    def create_id(cluster_name: str, **_) -> UUID:
        return cluster_id(cluster_name)

    @event("ClusterRegistered")
    def __init__(self, cluster_name: str, driver: str, target: str, status: str, command_id: str):
        self.cluster_name = cluster_name
        self.driver = driver
        self.target = target
        self.status = status
        self.task_status: str | None = None
        self.prior_status: str | None = None
        self.snapshot_name: str | None = None
        self.read_only = False

    @classmethod
    def register(cls, cluster_name: str, driver: str, target: str, command_id: str) -> "Cluster":
        check_cluster_name(cluster_name)
        check_no_secret(target)
        return cls(cluster_name=cluster_name, driver=driver, target=target,
                   status="Available", command_id=command_id)

    def report_status(self, status: str, command_id: str) -> None:
        self.check_not_creating_snapshot()
        self._change_status(cluster_name=self.cluster_name, status=status, command_id=command_id)

    @event("ClusterStatusChanged")
    def _change_status(self, cluster_name: str, status: str, command_id: str) -> None:
        self.status = status

    def lock(self, snapshot_name: str, command_id: str) -> None:
        self.check_not_creating_snapshot()
        self.check_status_allows_snapshot()
        self._lock(self.cluster_name, snapshot_name, "Unavailable", CREATING_SNAPSHOT,
                   self.status, command_id)

    @event("ClusterLocked")
    def _lock(self, cluster_name, snapshot_name, status, task_status, prior_status, command_id):
        self.prior_status = prior_status
        self.status = status
        self.task_status = task_status
        self.snapshot_name = snapshot_name

    @event("ClusterReadOnly")
    def _make_read_only(self, cluster_name, snapshot_name, status, command_id):
        self.status = status
        self.read_only = True

    def make_read_only(self, command_id: str) -> None:
        self._make_read_only(self.cluster_name, self.snapshot_name, "Read-only", command_id)

    def unlock(self, command_id: str) -> None:
        self._unlock(self.cluster_name, self.snapshot_name, self.prior_status, None, command_id)

    @event("ClusterUnlocked")
    def _unlock(self, cluster_name, snapshot_name, status, task_status, command_id):
        self.status = status
        self.task_status = None
        self.prior_status = None
        self.snapshot_name = None
        self.read_only = False

    def restart(self, command_id: str) -> None:
        self.check_not_creating_snapshot()
        self._restart(self.cluster_name, command_id)

    @event("ClusterRestarted")
    def _restart(self, cluster_name, command_id):
        pass

    @property
    def is_creating_snapshot(self) -> bool:
        return self.task_status == CREATING_SNAPSHOT

    def check_not_creating_snapshot(self) -> None:
        if self.is_creating_snapshot:
            raise SnapshotInProgress(
                f"cluster {self.cluster_name!r} is creating snapshot {self.snapshot_name!r}")

    def check_status_allows_snapshot(self) -> None:
        if self.status not in SNAPSHOT_ALLOWED_STATUSES:
            raise ClusterNotReady(
                f"cluster {self.cluster_name!r} is {self.status}; a snapshot needs one of "
                + ", ".join(SNAPSHOT_ALLOWED_STATUSES))


class Snapshot(Aggregate):
    """One snapshot of one cluster: Creating, then Available or Failed."""

    @staticmethod
    def create_id(snapshot_name: str, **_) -> UUID:
        return snapshot_id(snapshot_name)

    @event("SnapshotStarted")
    def __init__(self, cluster_name: str, snapshot_name: str, description: str,
                 snapshot_type: str, started_at: datetime, command_id: str):
        self.cluster_name = cluster_name
        self.snapshot_name = snapshot_name
        self.description = description
        self.snapshot_type = snapshot_type
        self.started_at = started_at
        self.command_id = command_id
        self.status = "Creating"
        self.size_bytes: int | None = None
        self.sha256: str | None = None
        self.failure_reason: str | None = None
        self.restore_target: str | None = None
        self.restore_command_id: str | None = None
        self.deleted = False

    @classmethod
    def start(cls, cluster_name, snapshot_name, description, started_at, command_id) -> "Snapshot":
        check_snapshot_name(snapshot_name)
        check_description(description)
        return cls(cluster_name=cluster_name, snapshot_name=snapshot_name,
                   description=description, snapshot_type="Manual",
                   started_at=started_at, command_id=command_id)

    def complete(self, size_bytes: int, sha256: str, finished_at: datetime, warning: str | None) -> None:
        self._complete(self.cluster_name, self.snapshot_name, size_bytes, sha256, self.started_at,
                       finished_at, warning, self.command_id)

    @event("SnapshotCompleted")
    def _complete(self, cluster_name, snapshot_name, size_bytes, sha256, started_at, finished_at,
                  warning, command_id):
        self.status = "Available"
        self.size_bytes = size_bytes
        self.sha256 = sha256

    def fail(self, reason: str, finished_at: datetime) -> None:
        self._fail(self.cluster_name, self.snapshot_name, reason, finished_at, self.command_id)

    @event("SnapshotFailed")
    def _fail(self, cluster_name, snapshot_name, reason, finished_at, command_id):
        self.status = "Failed"
        self.failure_reason = reason

    def start_restore(self, target_cluster_name: str, command_id: str) -> None:
        if self.status != "Available":
            raise SnapshotNotAvailable(
                f"snapshot {self.snapshot_name!r} is {self.status}; only an Available one can be restored")
        check_cluster_name(target_cluster_name)
        self._start_restore(self.cluster_name, self.snapshot_name, target_cluster_name, command_id)

    @event("RestoreStarted")
    def _start_restore(self, cluster_name, snapshot_name, target_cluster_name, command_id):
        self.status = "Restoring"
        self.restore_target = target_cluster_name
        self.restore_command_id = command_id

    def complete_restore(self) -> None:
        self._complete_restore(self.cluster_name, self.snapshot_name, self.restore_target,
                               self.restore_command_id)

    @event("RestoreCompleted")
    def _complete_restore(self, cluster_name, snapshot_name, target_cluster_name, command_id):
        self.status = "Available"

    def fail_restore(self, reason: str) -> None:
        self._fail_restore(self.cluster_name, self.snapshot_name, self.restore_target, reason,
                           self.restore_command_id)

    @event("RestoreFailed")
    def _fail_restore(self, cluster_name, snapshot_name, target_cluster_name, reason, command_id):
        self.status = "Available"

    def delete(self, command_id: str) -> None:
        if self.status not in ("Available", "Failed"):
            raise SnapshotBusy(f"snapshot {self.snapshot_name!r} is {self.status}; it can be "
                               "deleted once it is Available or Failed")
        self._delete(self.cluster_name, self.snapshot_name, command_id)

    @event("SnapshotDeleted")
    def _delete(self, cluster_name, snapshot_name, command_id):
        self.deleted = True


class CommandRecord(Aggregate):
    """A command id seen by the service; its existence makes a re-delivery a no-op."""

    @staticmethod
    def create_id(command_id: str, **_) -> UUID:
        return command_record_id(command_id)

    @event("CommandReceived")
    def __init__(self, command_id: str, command_type: str, cluster_name: str):
        self.command_id = command_id
        self.command_type = command_type
        self.cluster_name = cluster_name
        self.rejection: str | None = None

    @event("CommandRejected")
    def reject(self, cluster_name, command_id, command_type, code, reason):
        self.rejection = code
