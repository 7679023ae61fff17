"""The application: commands in (through the handler table), aggregates saved, the
workflow's steps, and the queries on the event store.

Every command is recorded as a `CommandRecord` in the same atomic save as its effects, so
a command id seen before (a redelivery, a client retry) has no second effect, and a
refused command leaves exactly one stored `CommandRejected`."""

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from enum import StrEnum

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Notification
from eventsourcing.utils import get_topic

from events import commands as c
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots.domain import (Cluster, CommandRecord, Snapshot, cluster_id,
                                       command_record_id, snapshot_id)
from services.snapshots.handlers import COMMAND_HANDLERS
from services.snapshots.rules import CommandNotAccepted, UnknownCluster, UnknownSnapshot
from services.snapshots.targets import AllowedTargets, check_target


class Outcome(StrEnum):
    """What became of one command."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead-lettered"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SnapshotsApplication(Application):
    """Commands in, aggregates saved; the notification log is the outbox."""

    name = "Snapshots"

    def __init__(self, env=None, on_saved: Callable[[], None] | None = None,
                 allowed_targets: AllowedTargets | None = None):
        super().__init__(env=env)
        #: Called after every save (the composition root points it at the relay's wake-up).
        self._on_saved = on_saved
        #: Where clusters may live (SNAPSHOT_ALLOWED_TARGETS); None: anywhere (unit tests).
        self._allowed_targets = allowed_targets

    def check_target(self, driver: str, target: str) -> None:
        """Refuse a target outside the allow-list, or carrying a secret, before anything
        connects to it or opens it."""
        if self._allowed_targets is not None:
            check_target(driver, target, self._allowed_targets)

    def _notify(self, recordings) -> None:
        super()._notify(recordings)
        if self._on_saved is not None:
            self._on_saved()

    def handle(self, command_id: str, command: c.Command, attempts: int = 5) -> Outcome:
        """Apply a command once."""
        handler = COMMAND_HANDLERS[type(command)]
        for _ in range(attempts):
            if self.has_seen(command_id):
                return Outcome.DUPLICATE
            record = CommandRecord(command_id=command_id, command_type=type(command).__name__,
                                   cluster_name=command.cluster_name)
            try:
                aggregates = handler(self, command, command_id)
            except CommandNotAccepted as refusal:
                return self.reject(record, refusal.code, refusal.reason)
            try:
                self.save(record, *aggregates)
                return Outcome.ACCEPTED
            except IntegrityError:
                continue  # a concurrent writer got there first: decide again on fresh state
        raise RuntimeError(f"command {command_id} kept conflicting with concurrent writers")

    def reject(self, record: CommandRecord, code: str, reason: str) -> Outcome:
        record.reject(record.cluster_name, record.command_id, record.command_type, code, reason)
        try:
            self.save(record)
        except IntegrityError:
            return Outcome.DUPLICATE
        return Outcome.REJECTED

    def reject_invalid(self, command_id: str, command_type: str, cluster_name: str,
                       code: str, reason: str) -> Outcome:
        """Record the rejection of a decodable command whose type or data is invalid."""
        if self.has_seen(command_id):
            return Outcome.DUPLICATE
        record = CommandRecord(command_id=command_id, command_type=command_type,
                               cluster_name=cluster_name)
        return self.reject(record, code, reason)

    def has_seen(self, command_id: str) -> bool:
        return self.find(command_record_id(command_id)) is not None

    # Workflow steps (called by the workflow, not by commands).

    def make_read_only(self, cluster_name: str, snapshot_name: str) -> None:
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            raise IntegrityError(f"{cluster_name} is no longer creating {snapshot_name}")
        cluster.make_read_only(self.get_snapshot(snapshot_name).command_id)
        self.save(cluster)

    def complete_snapshot(self, cluster_name: str, snapshot_name: str, size_bytes: int,
                          warning: str | None, sha256: str = "", attempt: str | None = None) -> bool:
        """Record the outcome of the snapshot's workflow; False (nothing recorded) when the
        cluster is no longer creating that snapshot: a stale workflow."""
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            return False
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.complete(size_bytes, sha256, _now(), warning, attempt)
        cluster.unlock(snapshot.command_id)
        self.save(snapshot, cluster)
        return True

    def fail_snapshot(self, cluster_name: str, snapshot_name: str, reason: str) -> bool:
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            return False
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.fail(reason[:1000], _now())
        cluster.unlock(snapshot.command_id)
        self.save(snapshot, cluster)
        return True

    def creating_another(self, cluster_name: str, snapshot_name: str) -> bool:
        """Is the cluster creating a snapshot other than this one?"""
        cluster = self.get_cluster(cluster_name)
        return cluster.is_creating_snapshot and name_key(cluster.snapshot_name) != name_key(snapshot_name)

    def _creating(self, cluster_name: str, snapshot_name: str) -> Cluster | None:
        """The cluster, if it is still creating this very snapshot (the fence of every step)."""
        cluster = self.get_cluster(cluster_name)
        if cluster.is_creating_snapshot and name_key(cluster.snapshot_name) == name_key(snapshot_name):
            return cluster
        return None

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
        snapshot = self.find(snapshot_id(snapshot_name))
        if snapshot is None or snapshot.deleted or name_key(snapshot.cluster_name) != name_key(cluster_name):
            raise UnknownSnapshot(f"cluster {cluster_name!r} has no snapshot {snapshot_name!r}")
        return snapshot

    def get_cluster(self, cluster_name: str) -> Cluster:
        cluster = self.find(cluster_id(cluster_name))
        if cluster is None:
            raise UnknownCluster(f"cluster {cluster_name!r} is not registered")
        return cluster

    def get_snapshot(self, snapshot_name: str) -> Snapshot:
        return self.repository.get(snapshot_id(snapshot_name))

    def all_clusters(self) -> list[Cluster]:
        return list(self._all(Cluster.ClusterRegistered))

    def clusters_creating_snapshots(self) -> Iterator[Cluster]:
        """Clusters left locked by an interrupted workflow (read at start-up)."""
        return (c for c in self._all(Cluster.ClusterRegistered) if c.is_creating_snapshot)

    def snapshots_restoring(self) -> Iterator[Snapshot]:
        """Snapshots left Restoring by an interrupted restore (read at start-up)."""
        return (s for s in self._all(Snapshot.SnapshotStarted) if s.status == SnapshotStatus.RESTORING)

    def notifications(self, start: int = 1, batch_size: int = 500,
                      topics: Sequence[str] = ()) -> Iterator[list[Notification]]:
        """The notification log from `start`, in batches: the one paging loop."""
        while batch := self.recorder.select_notifications(start, batch_size, topics=topics):
            yield batch
            start = batch[-1].id + 1

    def _all(self, created_event_class) -> Iterator:
        for batch in self.notifications(topics=[get_topic(created_event_class)]):
            for notification in batch:
                yield self.repository.get(notification.originator_id)

    def find(self, aggregate_id):
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
