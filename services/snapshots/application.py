"""The application: commands in (through the handler table), aggregates saved, the
workflow's steps, and the queries on the event store.

Every command is recorded as a `CommandRecord` in the same atomic save as its effects, so
a command id seen before (a redelivery, a client retry) has no second effect, and a
refused command leaves exactly one stored `CommandRejected`. The record keeps the hash of
the payload: the same id with another payload is answered once with `command_id_reused`
(an extra `CommandRejected` for that id), and the first outcome stands."""

import hashlib
import json
from dataclasses import asdict
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Notification
from eventsourcing.utils import get_topic

from events import commands as c
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots.domain import (Cluster, CommandContext, CommandRecord, Snapshot, cluster_id,
                                       command_record_id, snapshot_id)
from services.snapshots.clock import Clock
from services.snapshots.group_commit import GroupCommit
from services.snapshots.handlers import COMMAND_HANDLERS, INTERNAL_COMMAND_HANDLERS
from services.snapshots.rules import CommandNotAccepted, UnknownCluster, UnknownSnapshot
from services.snapshots.repository import check_repository_url, normalized_url
from services.snapshots.targets import AllowedTargets, TargetNotAllowed, check_target


class Outcome(StrEnum):
    """What became of one command."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead-lettered"


def payload_sha256(command_type: str, data: Any) -> str:
    """The fingerprint of a command's payload: sha256 of its type and the canonical JSON of
    its `data` (sorted keys, no whitespace), which tells a re-delivery from another command
    reusing the id. Defined for any decoded JSON, lone surrogates included."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{command_type}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def command_sha256(command: c.Command) -> str:
    """The fingerprint of a command built in code: the fields it was given, as on the wire."""
    return payload_sha256(type(command).__name__, command.model_dump(mode="json", exclude_unset=True))


class SnapshotsApplication(Application):
    """Commands in, aggregates saved; the notification log is the outbox."""

    name = "Snapshots"
    #: Defaults under the environment and the composition root's settings. eventsourcing
    #: retries a failed PostgreSQL call 10 times, each waiting this long for a connection
    #: (its default, 30 s, kept a store outage silent for minutes before the intake heard
    #: of it and logged its pause). Store calls never queue for connections: at most
    #: `store_threads` run at once, fewer than the pool holds.
    #: The aggregate cache (eventsourcing's): a get starts from the cached aggregate and
    #: reads only the events stored after it (fast-forward), so nothing is rebuilt from its
    #: whole history, yet every get sees what other instances stored. The cache holds only
    #: what was read from the store (a get returns a deep copy; a save never puts its
    #: aggregates in it), so an aggregate changed by a save that failed is never served.
    env = {"POSTGRES_CONNECT_TIMEOUT": "5", "AGGREGATE_CACHE_MAXSIZE": "10000",
           "AGGREGATE_CACHE_FASTFORWARD": "y"}

    def __init__(self, env=None, on_saved: Callable[[], None] | None = None,
                 allowed_targets: AllowedTargets | None = None, clock: Clock | None = None,
                 copy_targets: tuple[str, ...] = ()):
        super().__init__(env=env)
        #: The time of snapshots' starts and ends, policies' slots and expiry (clock.py).
        self.clock = clock or Clock.from_environment()
        #: Repository URLs a copy may go to (SNAPSHOT_COPY_TARGETS, normalized).
        self._copy_targets = copy_targets
        #: Called after every save (the composition root points it at the relay's wake-up).
        self._on_saved = on_saved
        #: Where clusters may live (SNAPSHOT_ALLOWED_TARGETS); None: anywhere (unit tests).
        self._allowed_targets = allowed_targets
        #: Saves made together by the store threads share one transaction (group_commit.py).
        self.group_commit = GroupCommit(self.events.put)

    def check_target(self, driver: str, target: str) -> None:
        """Refuse a target outside the allow-list, or carrying a secret, before anything
        connects to it or opens it."""
        if self._allowed_targets is not None:
            check_target(driver, target, self._allowed_targets)

    def check_copy_target(self, url: str, source: str) -> str:
        """The normalized URL of a copy target listed in SNAPSHOT_COPY_TARGETS, other than
        the snapshot's own repository; TargetNotAllowed otherwise."""
        target = check_repository_url(url)
        if target not in self._copy_targets:
            raise TargetNotAllowed(f"{target[:200]!r} is not one of this service's copy targets "
                                   "(SNAPSHOT_COPY_TARGETS)")
        if target == normalized_url(source):
            raise TargetNotAllowed(f"the snapshot is kept in {target} already")
        return target

    def _record(self, processing_event):
        if self.repository.cache and not self.repository.fastforward:
            raise RuntimeError("the aggregate cache must fast-forward (AGGREGATE_CACHE_FASTFORWARD=y)")
        return self.group_commit.record(processing_event.events, tracking=processing_event.tracking,
                                        **processing_event.saved_kwargs)

    def _notify(self, recordings) -> None:
        super()._notify(recordings)
        if self._on_saved is not None:
            self._on_saved()

    def handle(self, command_id: str, command: c.Command, attempts: int = 5,
               payload_sha256: str | None = None, context: CommandContext | None = None) -> Outcome:
        """Apply a command once. `payload_sha256` is the hash of the payload as it arrived
        (the intake's); without it, the command's own fields are hashed. `context`: who
        issued it, and its trace (kept on its record, published with its events)."""
        digest = payload_sha256 or command_sha256(command)
        return self._deciding(lambda: self._decide(command_id, command, digest, context), command_id, attempts)

    def reject_invalid(self, command_id: str, command_type: str, cluster_name: str,
                       code: str, reason: str, payload_sha256: str | None = None,
                       context: CommandContext | None = None) -> Outcome:
        """Record the rejection of a decodable command whose type or data is invalid (or
        whose handling failed: `internal_error`), unless its id already has an outcome."""
        return self._deciding(lambda: self._refuse(command_id, command_type, cluster_name,
                                                   payload_sha256, code, reason, context), command_id)

    def was_accepted(self, command_id: str, payload_sha256: str) -> bool:
        """Whether this very payload was accepted under this id (not rejected, not another)."""
        record = self.find(command_record_id(command_id))
        return record is not None and record.rejection is None and record.payload_sha256 == payload_sha256

    def has_seen(self, command_id: str) -> bool:
        return self.find(command_record_id(command_id)) is not None

    @staticmethod
    def _deciding(decide: Callable[[], Outcome], command_id: str, attempts: int = 5) -> Outcome:
        for _ in range(attempts):
            try:
                return decide()
            except IntegrityError:
                continue  # a concurrent writer got there first: decide again on fresh state
        raise RuntimeError(f"command {command_id} kept conflicting with concurrent writers")

    def _decide(self, command_id: str, command: c.Command, digest: str,
                context: CommandContext | None) -> Outcome:
        seen = self.find(command_record_id(command_id))
        if seen is not None:
            return self._repeat(seen, type(command).__name__, command.cluster_name, digest)
        record = CommandRecord(command_id=command_id, command_type=type(command).__name__,
                               cluster_name=command.cluster_name, payload_sha256=digest,
                               **asdict(context or CommandContext()))
        try:
            handler = COMMAND_HANDLERS.get(type(command)) or INTERNAL_COMMAND_HANDLERS[type(command)]
            aggregates = handler(self, command, command_id)
        except CommandNotAccepted as refusal:
            return self.reject(record, refusal.code, refusal.reason)
        self.save(record, *aggregates)
        return Outcome.ACCEPTED

    def _refuse(self, command_id: str, command_type: str, cluster_name: str, digest: str | None,
                code: str, reason: str, context: CommandContext | None = None) -> Outcome:
        seen = self.find(command_record_id(command_id))
        if seen is not None:
            return self._repeat(seen, command_type, cluster_name, digest)
        record = CommandRecord(command_id=command_id, command_type=command_type,
                               cluster_name=cluster_name, payload_sha256=digest,
                               **asdict(context or CommandContext()))
        return self.reject(record, code, reason)

    def _repeat(self, record: CommandRecord, command_type: str, cluster_name: str,
                digest: str | None) -> Outcome:
        """A command id seen before: its own payload again is a duplicate (no event);
        another payload is refused `command_id_reused` once, and the first outcome stands.
        An unknown payload (`None`) counts as the record's own."""
        if digest is None or record.has_answered(digest):
            return Outcome.DUPLICATE
        record.refuse_reuse(cluster_name, command_type, digest)
        self.save(record)
        return Outcome.REJECTED

    def reject(self, record: CommandRecord, code: str, reason: str) -> Outcome:
        """Save a new record with its one rejection (IntegrityError: the id was taken)."""
        record.reject(record.cluster_name, record.command_id, record.command_type, code, reason)
        self.save(record)
        return Outcome.REJECTED

    # Workflow steps (called by the workflow, not by commands).

    def make_read_only(self, cluster_name: str, snapshot_name: str) -> None:
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            raise IntegrityError(f"{cluster_name} is no longer creating {snapshot_name}")
        cluster.make_read_only(self.get_snapshot(snapshot_name).command_id)
        self.save(cluster)

    def complete_snapshot(self, cluster_name: str, snapshot_name: str, size_bytes: int,
                          warning: str | None, sha256: str = "", attempt: str | None = None,
                          repository: str = "local") -> bool:
        """Record the outcome of the snapshot's workflow; False (nothing recorded) when the
        cluster is no longer creating that snapshot: a stale workflow."""
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            return False
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.complete(size_bytes, sha256, self.clock.now(), warning, attempt, repository)
        _end_task(cluster, snapshot.command_id)
        self.save(snapshot, cluster)
        return True

    def fail_snapshot(self, cluster_name: str, snapshot_name: str, reason: str) -> bool:
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            return False
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.fail(reason[:1000], self.clock.now())
        _end_task(cluster, snapshot.command_id)
        self.save(snapshot, cluster)
        return True

    def unlock_online(self, cluster_name: str, snapshot_name: str) -> None:
        """An online snapshot's ClusterUnlocked: writable again, the copy goes on."""
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            raise IntegrityError(f"{cluster_name} is no longer creating {snapshot_name}")
        if not cluster.unlocked:
            cluster.unlock_online(self.get_snapshot(snapshot_name).command_id)
            self.save(cluster)

    def cancel_requested(self, snapshot_name: str) -> bool:
        """Was a cancel of this snapshot accepted (and the snapshot not finished yet)?"""
        snapshot = self.find(snapshot_id(snapshot_name))
        return (snapshot is not None and snapshot.status == SnapshotStatus.CREATING
                and snapshot.cancel_command_id is not None)

    def cancel_snapshot(self, cluster_name: str, snapshot_name: str, reason: str) -> bool:
        """Record a cancel whose copy has stopped, files removed and cluster released:
        `SnapshotCancelled` (the cancel command's) and `ClusterUnlocked` (the create's)."""
        cluster = self._creating(cluster_name, snapshot_name)
        if cluster is None:
            return False
        snapshot = self.get_snapshot(cluster.snapshot_name)
        snapshot.cancel(reason[:1000], self.clock.now())
        _end_task(cluster, snapshot.command_id)
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

    def complete_copy(self, snapshot_name: str, target: str, size_bytes: int,
                      command_id: str | None = None) -> bool:
        """Record a copy's outcome; False (nothing recorded) when the snapshot is no longer
        being copied to `target` by that command (`command_id`, if given): a stale copy."""
        snapshot = self._copying(snapshot_name, target, command_id)
        if snapshot is not None:
            snapshot.complete_copy(target, size_bytes)
            self.save(snapshot)
        return snapshot is not None

    def fail_copy(self, snapshot_name: str, target: str, reason: str, command_id: str | None = None) -> bool:
        """As `complete_copy`, for SnapshotCopyFailed."""
        snapshot = self._copying(snapshot_name, target, command_id)
        if snapshot is not None:
            snapshot.fail_copy(target, reason[:1000])
            self.save(snapshot)
        return snapshot is not None

    def _copying(self, snapshot_name: str, target: str, command_id: str | None) -> Snapshot | None:
        snapshot = self.get_snapshot(snapshot_name)
        running = snapshot.copies.get(target)
        return snapshot if running and command_id in (None, running) else None

    def snapshots_copying(self) -> Iterator[Snapshot]:
        """Snapshots with a copy left running by an interrupted worker (read at start-up)."""
        return (s for s in self._all(Snapshot.SnapshotStarted) if not s.deleted and getattr(s, "copying", None))

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

    def all_snapshots(self) -> list[Snapshot]:
        """Every snapshot ever started, deleted ones included (the retention pass)."""
        return list(self._all(Snapshot.SnapshotStarted))

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


def _end_task(cluster: Cluster, command_id: str) -> None:
    """After the outcome: unlock, or (an online snapshot, unlocked already) end the task."""
    if cluster.unlocked:
        cluster.end_online_task(command_id)
    else:
        cluster.unlock(command_id)
