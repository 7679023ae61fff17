"""The application: one method per command, each get → call aggregate → save.

Every command is recorded as a `CommandRecord` in the same atomic save as its effects, so
a command id seen before (a redelivery, a client retry) has no second effect, and a
refused command leaves exactly one stored `CommandRejected`."""

from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from events import commands as c
from services.snapshots.domain import (
    Cluster,
    CommandNotAccepted,
    CommandRecord,
    DuplicateClusterName,
    DuplicateSnapshotName,
    Snapshot,
    UnknownCluster,
    UnknownSnapshot,
    check_description,
    check_snapshot_name,
    cluster_id,
    command_record_id,
    snapshot_id,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SnapshotsApplication(Application):
    """Commands in, aggregates saved; the notification log is the outbox."""

    name = "Snapshots"

    #: Called after every save (the relay uses it to publish at once instead of polling).
    on_saved: "Callable[[], None] | None" = None

    def _notify(self, recordings) -> None:
        super()._notify(recordings)
        if self.on_saved is not None:
            self.on_saved()

    def handle(self, command_id: str, command: c.Command, attempts: int = 5) -> str:
        """Apply a command once. Returns 'accepted', 'rejected' or 'duplicate'."""
        for _ in range(attempts):
            if self.has_seen(command_id):
                return "duplicate"
            record = CommandRecord(command_id=command_id, command_type=type(command).__name__,
                                   cluster_name=command.cluster_name)
            try:
                aggregates = getattr(self, "_" + type(command).__name__)(command, command_id)
            except CommandNotAccepted as refusal:
                return self.reject(record, refusal.code, refusal.reason)
            try:
                self.save(record, *aggregates)
                return "accepted"
            except IntegrityError:
                continue  # a concurrent writer got there first: decide again on fresh state
        raise RuntimeError(f"command {command_id} kept conflicting with concurrent writers")

    def reject(self, record: CommandRecord, code: str, reason: str) -> str:
        record.reject(record.cluster_name, record.command_id, record.command_type, code, reason)
        try:
            self.save(record)
        except IntegrityError:
            return "duplicate"
        return "rejected"

    def reject_invalid(self, command_id: str, command_type: str, cluster_name: str,
                       code: str, reason: str) -> str:
        """Record the rejection of a decodable command whose type or data is invalid."""
        if self.has_seen(command_id):
            return "duplicate"
        record = CommandRecord(command_id=command_id, command_type=command_type,
                               cluster_name=cluster_name)
        return self.reject(record, code, reason)

    def has_seen(self, command_id: str) -> bool:
        return self._find(command_record_id(command_id)) is not None

    def _RegisterCluster(self, cmd: c.RegisterCluster, command_id: str):
        if self._find(cluster_id(cmd.cluster_name)) is not None:
            raise DuplicateClusterName(f"cluster {cmd.cluster_name!r} is already registered")
        return [Cluster.register(cmd.cluster_name, cmd.driver, cmd.target, command_id)]

    def _ReportClusterStatus(self, cmd: c.ReportClusterStatus, command_id: str):
        cluster = self.get_cluster(cmd.cluster_name)
        cluster.report_status(cmd.status, command_id)
        return [cluster]

    def _RestartClusterRequested(self, cmd: c.RestartClusterRequested, command_id: str):
        cluster = self.get_cluster(cmd.cluster_name)
        cluster.restart(command_id)
        return [cluster]

    def _CreateSnapshotRequested(self, cmd: c.CreateSnapshotRequested, command_id: str):
        check_snapshot_name(cmd.snapshot_name)
        check_description(cmd.description)
        cluster = self.get_cluster(cmd.cluster_name)
        existing = self._find(snapshot_id(cmd.snapshot_name))
        if existing is not None:
            raise DuplicateSnapshotName(
                f"snapshot name {cmd.snapshot_name!r} is taken by {existing.snapshot_name!r} "
                "(names are case-insensitive)")
        cluster.lock(cmd.snapshot_name, command_id)
        snapshot = Snapshot.start(cluster.cluster_name, cmd.snapshot_name, cmd.description,
                                  _now(), command_id)
        return [cluster, snapshot]

    def _RestoreSnapshotRequested(self, cmd: c.RestoreSnapshotRequested, command_id: str):
        snapshot = self.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
        if self._find(cluster_id(cmd.target_cluster_name)) is not None:
            raise DuplicateClusterName(f"cluster {cmd.target_cluster_name!r} already exists")
        snapshot.start_restore(cmd.target_cluster_name, command_id)
        return [snapshot]

    def _DeleteSnapshotRequested(self, cmd: c.DeleteSnapshotRequested, command_id: str):
        snapshot = self.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
        snapshot.delete(command_id)
        return [snapshot]

    # Workflow steps (called by the workflow, not by commands).

    def make_read_only(self, cluster_name: str) -> Cluster:
        cluster = self.get_cluster(cluster_name)
        snapshot = self.get_snapshot(cluster.snapshot_name)
        cluster.make_read_only(snapshot.command_id)
        self.save(cluster)
        return cluster

    def complete_snapshot(self, cluster_name: str, size_bytes: int, warning: str | None,
                          sha256: str = "") -> None:
        cluster = self.get_cluster(cluster_name)
        if not cluster.is_creating_snapshot:
            return  # another worker finished this workflow
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.complete(size_bytes, sha256, _now(), warning)
        cluster.unlock(snapshot.command_id)
        self.save(snapshot, cluster)

    def fail_snapshot(self, cluster_name: str, reason: str) -> None:
        cluster = self.get_cluster(cluster_name)
        if not cluster.is_creating_snapshot:
            return  # another worker finished this workflow
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.fail(reason[:1000], _now())
        cluster.unlock(snapshot.command_id)
        self.save(snapshot, cluster)

    def complete_restore(self, snapshot_name: str, driver: str, target: str) -> None:
        snapshot = self.get_snapshot(snapshot_name)
        snapshot.complete_restore()
        restored = Cluster.register(snapshot.restore_target, driver, target, snapshot.restore_command_id)
        try:
            self.save(snapshot, restored)
        except IntegrityError:  # the name was taken while the restore ran
            self.fail_restore(snapshot_name, f"cluster {snapshot.restore_target!r} already exists")

    def fail_restore(self, snapshot_name: str, reason: str) -> None:
        snapshot = self.get_snapshot(snapshot_name)
        snapshot.fail_restore(reason[:1000])
        self.save(snapshot)

    # Queries.

    def get_snapshot_of(self, cluster_name: str, snapshot_name: str) -> Snapshot:
        snapshot = self._find(snapshot_id(snapshot_name))
        if snapshot is None or snapshot.deleted or snapshot.cluster_name.lower() != cluster_name.lower():
            raise UnknownSnapshot(f"cluster {cluster_name!r} has no snapshot {snapshot_name!r}")
        return snapshot

    def get_cluster(self, cluster_name: str) -> Cluster:
        cluster = self._find(cluster_id(cluster_name))
        if cluster is None:
            raise UnknownCluster(f"cluster {cluster_name!r} is not registered")
        return cluster

    def get_snapshot(self, snapshot_name: str) -> Snapshot:
        return self.repository.get(snapshot_id(snapshot_name))

    def clusters_creating_snapshots(self) -> Iterator[Cluster]:
        """Clusters left locked by an interrupted workflow (read at start-up)."""
        return (c for c in self._all(Cluster.ClusterRegistered) if c.is_creating_snapshot)

    def snapshots_restoring(self) -> Iterator[Snapshot]:
        """Snapshots left Restoring by an interrupted restore (read at start-up)."""
        return (s for s in self._all(Snapshot.SnapshotStarted) if s.status == "Restoring")

    def _all(self, created_event_class) -> Iterator:
        topic = get_topic(created_event_class)
        start = 1
        while batch := self.recorder.select_notifications(start, 500, topics=[topic]):
            for notification in batch:
                yield self.repository.get(notification.originator_id)
            start = batch[-1].id + 1

    def _find(self, aggregate_id):
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
