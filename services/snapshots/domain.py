"""The aggregates and their events. Imports only the standard library, eventsourcing's
domain module, `rules`, and the standard-library half of the published language
(`events.events`, `events.vocabulary`).

Each event is one typed class: a published event's fields are inherited from its class in
`events.events` (so the stored event and the published one cannot disagree), and the
domain adds only what stays inside (`command_id`, which is published as `correlationid`;
a `sha256`; the status to restore); a one-line `class ...: pass` is an event whose
published fields are the whole of it. `CommandReceived` is the one internal event."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from events import events as published
from events.vocabulary import (SNAPSHOT_ALLOWED_STATUSES, ClusterStatus, DeletionReason, DriverName,
                               RejectionCode, SnapshotStatus, SnapshotType, TaskStatus, name_key)
from services.snapshots.rules import (ClusterNotReady, InvalidCommand, InvalidPolicy, SnapshotAutomated, SnapshotBusy,
                                      SnapshotInProgress, SnapshotNotAvailable, SnapshotNotCreating,
                                      check_cluster_name,
                                      check_description, check_no_secret, check_snapshot_name)
from services.snapshots.targets import TargetNotAllowed

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dws-snapshots")

#: Stored events that are bookkeeping and never published.
INTERNAL_EVENTS = frozenset({"CommandReceived", "SnapshotTaskEnded", "SnapshotCancelRequested"})


def cluster_id(name: str) -> UUID:
    return uuid5(_NAMESPACE, "cluster:" + name_key(name))


def snapshot_id(name: str) -> UUID:
    return uuid5(_NAMESPACE, "snapshot:" + name_key(name))


def command_record_id(command_id: str) -> UUID:
    return uuid5(_NAMESPACE, "command:" + command_id)


class CausedByCommand(Aggregate):
    """An aggregate whose every event names the command that caused it."""

    class Event(Aggregate.Event):
        command_id: str


class Cluster(CausedByCommand):
    """A warehouse cluster as the control plane sees it: status, task status, lock."""

    @staticmethod
    def create_id(cluster_name: str, **_) -> UUID:
        return cluster_id(cluster_name)

    class ClusterRegistered(CausedByCommand.Created, published.ClusterRegistered): pass

    @event(ClusterRegistered)
    def __init__(self, cluster_name: str, driver: str, target: str, status: ClusterStatus,
                 command_id: str):
        self.cluster_name = cluster_name
        self.driver = driver
        self.target = target
        self.status = status
        self.task_status: TaskStatus | None = None
        self.prior_status: ClusterStatus | None = None
        self.snapshot_name: str | None = None
        self.read_only = False
        self.policy: Policy | None = None
        #: The snapshot being created is online; it unlocked the cluster and its copy goes on.
        self.online = False
        self.unlocked = False

    @classmethod
    def register(cls, cluster_name: str, driver: str, target: str, command_id: str) -> "Cluster":
        check_cluster_name(cluster_name)
        check_no_secret(target)
        return cls(cluster_name=cluster_name, driver=driver, target=target,
                   status=ClusterStatus.AVAILABLE, command_id=command_id)

    def report_status(self, status: ClusterStatus, command_id: str) -> None:
        self.check_not_creating_snapshot()
        self._change_status(cluster_name=self.cluster_name, status=status, command_id=command_id)

    class ClusterStatusChanged(CausedByCommand.Event, published.ClusterStatusChanged): pass

    @event(ClusterStatusChanged)
    def _change_status(self, cluster_name: str, status: ClusterStatus, command_id: str) -> None:
        self.status = status

    def lock(self, snapshot_name: str, command_id: str, online: bool = False) -> None:
        if online and self.driver != DriverName.POSTGRES:
            raise InvalidCommand(f"online snapshots need a postgres cluster; {self.cluster_name!r} "
                                 f"is a {self.driver} cluster")
        self.check_not_creating_snapshot()
        self.check_status_allows_snapshot()
        self._lock(cluster_name=self.cluster_name, snapshot_name=snapshot_name,
                   status=ClusterStatus.UNAVAILABLE, task_status=TaskStatus.CREATING_SNAPSHOT,
                   prior_status=self.status, command_id=command_id, online=online)

    class ClusterLocked(CausedByCommand.Event, published.ClusterLocked):
        prior_status: ClusterStatus
        online: bool = False  # absent from events stored before online snapshots

    @event(ClusterLocked)
    def _lock(self, cluster_name, snapshot_name, status, task_status, prior_status, command_id,
              online=False):
        self.online = online
        self.prior_status = prior_status
        self.status = status
        self.task_status = task_status
        self.snapshot_name = snapshot_name

    def make_read_only(self, command_id: str) -> None:
        self._make_read_only(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                             status=ClusterStatus.READ_ONLY, command_id=command_id)

    class ClusterReadOnly(CausedByCommand.Event, published.ClusterReadOnly): pass

    @event(ClusterReadOnly)
    def _make_read_only(self, cluster_name, snapshot_name, status, command_id):
        self.status = status
        self.read_only = True

    def unlock(self, command_id: str) -> None:
        self._unlock(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                     status=self.prior_status, task_status=None, command_id=command_id)

    def unlock_online(self, command_id: str) -> None:
        """Writable again while an online snapshot's copy goes on: the task stays."""
        self._unlock(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                     status=self.prior_status, task_status=TaskStatus.CREATING_SNAPSHOT,
                     command_id=command_id)

    class ClusterUnlocked(CausedByCommand.Event, published.ClusterUnlocked): pass

    @event(ClusterUnlocked)
    def _unlock(self, cluster_name, snapshot_name, status, task_status, command_id):
        self.status = status
        self.read_only = False
        if task_status is not None:  # an online snapshot: unlocked, its task goes on
            self.unlocked = True
            return
        self._end_task()

    def end_online_task(self, command_id: str) -> None:
        """The outcome of an online snapshot, after its ClusterUnlocked, ends the task."""
        self._end_online_task(snapshot_name=self.snapshot_name, command_id=command_id)

    class SnapshotTaskEnded(CausedByCommand.Event):  # internal: the outcome event says it
        snapshot_name: str

    @event(SnapshotTaskEnded)
    def _end_online_task(self, snapshot_name, command_id):
        self._end_task()

    def _end_task(self) -> None:
        self.task_status = None
        self.prior_status = None
        self.snapshot_name = None
        self.online = self.unlocked = False

    def restart(self, command_id: str) -> None:
        self.check_not_creating_snapshot()
        self._restart(cluster_name=self.cluster_name, command_id=command_id)

    class ClusterRestarted(CausedByCommand.Event, published.ClusterRestarted): pass

    @event(ClusterRestarted)
    def _restart(self, cluster_name, command_id):
        pass

    def set_policy(self, schedule: str, keep_days: int, set_at: datetime, command_id: str) -> None:
        """The schedule and keep_days are checked by the handler (`policies.check_policy`)."""
        self._set_policy(cluster_name=self.cluster_name, schedule=schedule, keep_days=keep_days,
                         set_at=set_at, command_id=command_id)

    class SnapshotPolicySet(CausedByCommand.Event, published.SnapshotPolicySet):
        set_at: datetime  # slots before it are not fired

    @event(SnapshotPolicySet)
    def _set_policy(self, cluster_name, schedule, keep_days, set_at, command_id):
        self.policy = Policy(schedule, keep_days, set_at)

    def remove_policy(self, command_id: str) -> None:
        if self.policy is None:
            raise InvalidPolicy(f"cluster {self.cluster_name!r} has no snapshot policy")
        self._remove_policy(cluster_name=self.cluster_name, command_id=command_id)

    class SnapshotPolicyRemoved(CausedByCommand.Event, published.SnapshotPolicyRemoved): pass

    @event(SnapshotPolicyRemoved)
    def _remove_policy(self, cluster_name, command_id):
        self.policy = None

    def skip_slot(self, slot: datetime, reason: str, command_id: str) -> None:
        self._skip_slot(cluster_name=self.cluster_name, slot=slot.isoformat(), reason=reason,
                        command_id=command_id)

    class ScheduledSnapshotSkipped(CausedByCommand.Event, published.ScheduledSnapshotSkipped): pass

    @event(ScheduledSnapshotSkipped)
    def _skip_slot(self, cluster_name, slot, reason, command_id):
        pass

    @property
    def is_creating_snapshot(self) -> bool:
        return self.task_status == TaskStatus.CREATING_SNAPSHOT

    def check_not_creating_snapshot(self) -> None:
        if self.is_creating_snapshot:
            raise SnapshotInProgress(
                f"cluster {self.cluster_name!r} is creating snapshot {self.snapshot_name!r}")

    def check_status_allows_snapshot(self) -> None:
        if self.status not in SNAPSHOT_ALLOWED_STATUSES:
            raise ClusterNotReady(
                f"cluster {self.cluster_name!r} is {self.status}; a snapshot needs one of "
                + ", ".join(SNAPSHOT_ALLOWED_STATUSES))


class Snapshot(CausedByCommand):
    """One snapshot of one cluster: Creating, then Available or Failed."""

    @staticmethod
    def create_id(snapshot_name: str, **_) -> UUID:
        return snapshot_id(snapshot_name)

    class SnapshotStarted(CausedByCommand.Created, published.SnapshotStarted):
        started_at: datetime

    @event(SnapshotStarted)
    def __init__(self, cluster_name: str, snapshot_name: str, description: str,
                 snapshot_type: SnapshotType, started_at: datetime, command_id: str,
                 retention_days: int = -1, online: bool = False):
        self.retention_days = retention_days
        self.online = online
        self.cluster_name = cluster_name
        self.snapshot_name = snapshot_name
        self.description = description
        self.snapshot_type = snapshot_type
        self.started_at = started_at
        self.command_id = command_id
        self.status = SnapshotStatus.CREATING
        self.size_bytes: int | None = None
        self.sha256: str | None = None
        self.failure_reason: str | None = None
        self.attempt: str | None = None  # the workflow attempt whose files are the snapshot
        self.repository = "local"  # the repository holding them (set on completion)
        self.copies: dict[str, str] = {}  # copy target URL -> the copying command's id, or "" once copied
        self.restore_target: str | None = None
        self.restore_command_id: str | None = None
        self.deleted = False
        self.cancel_command_id: str | None = None  # set when a cancel was accepted

    @classmethod
    def start(cls, cluster_name, snapshot_name, description, started_at, command_id,
              snapshot_type: SnapshotType = SnapshotType.MANUAL, retention_days: int = -1,
              online: bool = False) -> "Snapshot":
        check_snapshot_name(snapshot_name)
        check_description(description)
        return cls(cluster_name=cluster_name, snapshot_name=snapshot_name,
                   description=description, snapshot_type=snapshot_type,
                   started_at=started_at, command_id=command_id, retention_days=retention_days,
                   online=online)

    @property
    def expires_at(self) -> datetime | None:
        retention = getattr(self, "retention_days", -1)
        return self.started_at + timedelta(days=retention) if retention > 0 else None

    def is_expired(self, now: datetime) -> bool:
        """Past its retention, and settled (Available, Failed or Cancelled), and not yet deleted."""
        return (not self.deleted and self.expires_at is not None and now >= self.expires_at
                and self.status in (SnapshotStatus.AVAILABLE, SnapshotStatus.FAILED, SnapshotStatus.CANCELLED)
                and not getattr(self, "copying", None))  # a copy running: once it has ended

    def complete(self, size_bytes: int, sha256: str, finished_at: datetime, warning: str | None,
                 attempt: str | None = None, repository: str = "local") -> None:
        self._complete(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                       size_bytes=size_bytes, sha256=sha256, started_at=self.started_at,
                       finished_at=finished_at, warning=warning, attempt=attempt,
                       command_id=self.command_id, repository=repository)

    class SnapshotCompleted(CausedByCommand.Event, published.SnapshotCompleted):
        sha256: str
        attempt: str | None = None  # absent from events stored before attempts existed

    @event(SnapshotCompleted)
    def _complete(self, cluster_name, snapshot_name, size_bytes, sha256, started_at, finished_at,
                  warning, command_id, attempt=None, repository="local"):
        self.status = SnapshotStatus.AVAILABLE
        self.size_bytes = size_bytes
        self.sha256 = sha256
        self.attempt = attempt
        self.repository = repository

    def fail(self, reason: str, finished_at: datetime) -> None:
        self._fail(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                   reason=reason, finished_at=finished_at, command_id=self.command_id)

    class SnapshotFailed(CausedByCommand.Event, published.SnapshotFailed):
        finished_at: datetime

    @event(SnapshotFailed)
    def _fail(self, cluster_name, snapshot_name, reason, finished_at, command_id):
        self.status = SnapshotStatus.FAILED
        self.failure_reason = reason

    def request_cancel(self, command_id: str) -> None:
        """Accept a cancel: recorded at once (internal), so that whichever worker runs the
        workflow next (this one, or the owner after a crash) stops the copy and cancels."""
        if self.status != SnapshotStatus.CREATING:
            raise SnapshotNotCreating(f"snapshot {self.snapshot_name!r} is {self.status}; only a "
                                      "Creating snapshot can be cancelled")
        if self.cancel_command_id is not None:
            raise SnapshotNotCreating(f"snapshot {self.snapshot_name!r} is already being cancelled "
                                      f"(command {self.cancel_command_id})")
        self._request_cancel(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                             command_id=command_id)

    class SnapshotCancelRequested(CausedByCommand.Event):
        cluster_name: str
        snapshot_name: str

    @event(SnapshotCancelRequested)
    def _request_cancel(self, cluster_name, snapshot_name, command_id):
        self.cancel_command_id = command_id

    def cancel(self, reason: str, finished_at: datetime) -> None:
        self._cancel(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                     reason=reason, finished_at=finished_at, command_id=self.cancel_command_id)

    class SnapshotCancelled(CausedByCommand.Event, published.SnapshotCancelled):
        finished_at: datetime

    @event(SnapshotCancelled)
    def _cancel(self, cluster_name, snapshot_name, reason, finished_at, command_id):
        self.status = SnapshotStatus.CANCELLED

    def start_restore(self, target_cluster_name: str, command_id: str) -> None:
        if self.status != SnapshotStatus.AVAILABLE:
            raise SnapshotNotAvailable(
                f"snapshot {self.snapshot_name!r} is {self.status}; only an Available one can be restored")
        check_cluster_name(target_cluster_name)
        self._start_restore(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                            target_cluster_name=target_cluster_name, command_id=command_id)

    class RestoreStarted(CausedByCommand.Event, published.RestoreStarted): pass

    @event(RestoreStarted)
    def _start_restore(self, cluster_name, snapshot_name, target_cluster_name, command_id):
        self.status = SnapshotStatus.RESTORING
        self.restore_target = target_cluster_name
        self.restore_command_id = command_id

    def complete_restore(self) -> None:
        self._complete_restore(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                               target_cluster_name=self.restore_target,
                               command_id=self.restore_command_id)

    class RestoreCompleted(CausedByCommand.Event, published.RestoreCompleted): pass

    @event(RestoreCompleted)
    def _complete_restore(self, cluster_name, snapshot_name, target_cluster_name, command_id):
        self.status = SnapshotStatus.AVAILABLE

    def fail_restore(self, reason: str) -> None:
        self._fail_restore(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                           target_cluster_name=self.restore_target, reason=reason,
                           command_id=self.restore_command_id)

    class RestoreFailed(CausedByCommand.Event, published.RestoreFailed): pass

    @event(RestoreFailed)
    def _fail_restore(self, cluster_name, snapshot_name, target_cluster_name, reason, command_id):
        self.status = SnapshotStatus.AVAILABLE

    def start_copy(self, target_repository: str, command_id: str) -> None:
        if self.status != SnapshotStatus.AVAILABLE:
            raise SnapshotNotAvailable(
                f"snapshot {self.snapshot_name!r} is {self.status}; only an Available one can be copied")
        if self.copies.get(target_repository):
            raise SnapshotBusy(f"snapshot {self.snapshot_name!r} is being copied to {target_repository} already")
        if target_repository in self.copies:  # a failed copy again would delete the good one
            raise TargetNotAllowed(f"snapshot {self.snapshot_name!r} is kept in {target_repository} already")
        self._start_copy(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                         target_repository=target_repository, command_id=command_id)

    class SnapshotCopyStarted(CausedByCommand.Event, published.SnapshotCopyStarted): pass

    @event(SnapshotCopyStarted)
    def _start_copy(self, cluster_name, snapshot_name, target_repository, command_id):
        self.copies[target_repository] = command_id

    @property
    def copying(self) -> list[str]:
        return [url for url, command_id in self.copies.items() if command_id]

    def complete_copy(self, target_repository: str, size_bytes: int) -> None:
        self._complete_copy(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                            target_repository=target_repository, size_bytes=size_bytes,
                            command_id=self.copies[target_repository])

    class SnapshotCopied(CausedByCommand.Event, published.SnapshotCopied): pass

    @event(SnapshotCopied)
    def _complete_copy(self, cluster_name, snapshot_name, target_repository, size_bytes, command_id):
        self.copies[target_repository] = ""

    def fail_copy(self, target_repository: str, reason: str) -> None:
        self._fail_copy(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                        target_repository=target_repository, reason=reason,
                        command_id=self.copies[target_repository])

    class SnapshotCopyFailed(CausedByCommand.Event, published.SnapshotCopyFailed): pass

    @event(SnapshotCopyFailed)
    def _fail_copy(self, cluster_name, snapshot_name, target_repository, reason, command_id):
        del self.copies[target_repository]

    def delete(self, command_id: str, reason: DeletionReason = DeletionReason.REQUESTED) -> None:
        if self.copying:
            raise SnapshotBusy(f"snapshot {self.snapshot_name!r} is being copied; it can be deleted "
                               "once the copy has ended")
        if reason == DeletionReason.REQUESTED and self.snapshot_type == SnapshotType.AUTOMATED:
            raise SnapshotAutomated(f"snapshot {self.snapshot_name!r} is Automated: its policy's "
                                    "retention deletes it")
        if self.status not in (SnapshotStatus.AVAILABLE, SnapshotStatus.FAILED, SnapshotStatus.CANCELLED):
            raise SnapshotBusy(f"snapshot {self.snapshot_name!r} is {self.status}; it can be "
                               "deleted once it is Available, Failed or Cancelled")
        self._delete(cluster_name=self.cluster_name, snapshot_name=self.snapshot_name,
                     command_id=command_id, reason=reason)

    class SnapshotDeleted(CausedByCommand.Event, published.SnapshotDeleted): pass

    @event(SnapshotDeleted)
    def _delete(self, cluster_name, snapshot_name, command_id, reason=DeletionReason.REQUESTED):
        self.deleted = True


class CommandRecord(CausedByCommand):
    """A command id seen by the service: its existence makes a re-delivery a no-op, and the
    hash of its payload tells a re-delivery from another command that reuses the id."""

    @staticmethod
    def create_id(command_id: str, **_) -> UUID:
        return command_record_id(command_id)

    class CommandReceived(CausedByCommand.Created):
        command_type: str
        cluster_name: str
        #: Absent from records stored before payloads were hashed (they match any payload).
        payload_sha256: str | None = None
        #: Who issued it and its trace (CloudEvents authcontext and distributed tracing):
        #: every event the command causes is published with them. None on older records.
        authtype: str | None = None
        authid: str | None = None
        traceparent: str | None = None
        tracestate: str | None = None

    @event(CommandReceived)
    def __init__(self, command_id: str, command_type: str, cluster_name: str,
                 payload_sha256: str | None = None, authtype: str | None = None,
                 authid: str | None = None, traceparent: str | None = None,
                 tracestate: str | None = None):
        self.command_id = command_id
        self.command_type = command_type
        self.cluster_name = cluster_name
        self.payload_sha256 = payload_sha256
        self.authtype, self.authid = authtype, authid
        self.traceparent, self.tracestate = traceparent, tracestate
        self.rejection: str | None = None
        #: Hashes of other payloads already refused `command_id_reused` (one answer each).
        self.refused_payloads: list[str] = []

    class CommandRejected(CausedByCommand.Event, published.CommandRejected):
        #: The refused payload's hash, on a `command_id_reused` rejection only.
        payload_sha256: str | None = None

    @event(CommandRejected)
    def reject(self, cluster_name, command_id, command_type, code, reason, payload_sha256=None):
        if code == RejectionCode.COMMAND_ID_REUSED:
            self.refused_payloads.append(payload_sha256)
        else:
            self.rejection = code

    def has_answered(self, payload_sha256: str) -> bool:
        """Whether a delivery of this payload under this id needs no new event: it is the
        command's own (a record without a hash matches any) or was refused already."""
        return self.payload_sha256 in (None, payload_sha256) or payload_sha256 in self.refused_payloads

    def refuse_reuse(self, cluster_name: str, command_type: str, payload_sha256: str) -> None:
        """Answer another payload under this id once, leaving the first outcome as it is."""
        self.reject(cluster_name, self.command_id, command_type, RejectionCode.COMMAND_ID_REUSED,
                    f"command id {self.command_id[:200]!r} was already used by a different "
                    f"{self.command_type} command; its outcome stands", payload_sha256)


@dataclass(frozen=True)
class Policy:
    """A cluster's snapshot policy: schedule (cron or rate, UTC), keep_days, since when."""

    schedule: str
    keep_days: int
    set_at: datetime


@dataclass(frozen=True)
class CommandContext:
    """Who issued a command (`authtype`: app_user, service_account, system,
    unauthenticated; `authid`) and its W3C trace context, as the command carried them."""

    authtype: str | None = None
    authid: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


AGGREGATES = (Cluster, Snapshot, CommandRecord)
