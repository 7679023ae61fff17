"""The command handlers: one small function per command, and the explicit table that maps
each command type to its handler.

A handler decides: it reads aggregates through the application's queries, calls the
aggregate methods (which apply the seed's rules and raise `CommandNotAccepted` with the
rejection code), and returns the aggregates to save. The application saves them together
with the command's record, in one transaction (`SnapshotsApplication.handle`)."""

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from eventsourcing.domain import Aggregate

from events import commands as c
from events.commands import COMMAND_TYPES
from events.vocabulary import DeletionReason, SnapshotType
from services.snapshots.domain import Cluster, Snapshot, cluster_id, snapshot_id
from services.snapshots.policies import automated_snapshot_name, check_policy, check_retention
from services.snapshots.rules import (CommandNotAccepted, DuplicateClusterName,
                                      DuplicateSnapshotName, check_description,
                                      check_snapshot_name)

if TYPE_CHECKING:
    from services.snapshots.application import SnapshotsApplication

Handler = Callable[["SnapshotsApplication", c.Command, str], list[Aggregate]]


def register_cluster(app: "SnapshotsApplication", cmd: c.RegisterCluster, command_id: str):
    app.check_target(cmd.driver, cmd.target)
    if app.find(cluster_id(cmd.cluster_name)) is not None:
        raise DuplicateClusterName(f"cluster {cmd.cluster_name!r} is already registered")
    return [Cluster.register(cmd.cluster_name, cmd.driver, cmd.target, command_id)]


def report_cluster_status(app: "SnapshotsApplication", cmd: c.ReportClusterStatus, command_id: str):
    cluster = app.get_cluster(cmd.cluster_name)
    cluster.report_status(cmd.status, command_id)
    return [cluster]


def restart_cluster(app: "SnapshotsApplication", cmd: c.RestartClusterRequested, command_id: str):
    cluster = app.get_cluster(cmd.cluster_name)
    cluster.restart(command_id)
    return [cluster]


def create_snapshot(app: "SnapshotsApplication", cmd: c.CreateSnapshotRequested, command_id: str):
    check_snapshot_name(cmd.snapshot_name)
    check_description(cmd.description)
    check_retention(cmd.retention_days)
    return _start_snapshot(app, app.get_cluster(cmd.cluster_name), cmd.snapshot_name, cmd.description,
                           command_id, SnapshotType.MANUAL, cmd.retention_days, cmd.online)


def _start_snapshot(app: "SnapshotsApplication", cluster: Cluster, snapshot_name: str, description: str,
                    command_id: str, snapshot_type: SnapshotType, retention_days: int,
                    online: bool = False):
    existing = app.find(snapshot_id(snapshot_name))
    if existing is not None:
        raise DuplicateSnapshotName(
            f"snapshot name {snapshot_name!r} is taken by {existing.snapshot_name!r} "
            "(names are case-insensitive)")
    cluster.lock(snapshot_name, command_id, online)
    snapshot = Snapshot.start(cluster.cluster_name, snapshot_name, description, app.clock.now(),
                              command_id, snapshot_type, retention_days, online)
    return [cluster, snapshot]


def restore_snapshot(app: "SnapshotsApplication", cmd: c.RestoreSnapshotRequested, command_id: str):
    snapshot = app.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
    source = app.get_cluster(cmd.cluster_name)
    # A postgres restore creates its database on the source's server: the allow-list may
    # have been narrowed since the source was registered.
    app.check_target(source.driver, source.target)
    if app.find(cluster_id(cmd.target_cluster_name)) is not None:
        raise DuplicateClusterName(f"cluster {cmd.target_cluster_name!r} already exists")
    snapshot.start_restore(cmd.target_cluster_name, command_id)
    return [snapshot]


def delete_snapshot(app: "SnapshotsApplication", cmd: c.DeleteSnapshotRequested, command_id: str):
    snapshot = app.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
    snapshot.delete(command_id)
    return [snapshot]


def set_policy(app: "SnapshotsApplication", cmd: c.SetSnapshotPolicy, command_id: str):
    check_policy(cmd.schedule, cmd.keep_days)
    cluster = app.get_cluster(cmd.cluster_name)
    cluster.set_policy(cmd.schedule, cmd.keep_days, app.clock.now(), command_id)
    return [cluster]


def remove_policy(app: "SnapshotsApplication", cmd: c.RemoveSnapshotPolicy, command_id: str):
    cluster = app.get_cluster(cmd.cluster_name)
    cluster.remove_policy(command_id)
    return [cluster]


# Commands the service issues itself (`scheduler.py`), never accepted from the bus: they go
# through `SnapshotsApplication.handle` all the same, so their ids make repeats no-ops.

class TakeScheduledSnapshot(c.Command):
    """Take the snapshot of one slot of the cluster's policy."""

    slot: datetime


class ExpireSnapshot(c.Command):
    """Delete a snapshot whose retention has run out."""

    snapshot_name: str


def take_scheduled_snapshot(app: "SnapshotsApplication", cmd: TakeScheduledSnapshot, command_id: str):
    """Lock and start the slot's Automated snapshot, or record the slot as skipped with the
    rejection code a manual snapshot would have got (busy, status, name taken)."""
    cluster = app.get_cluster(cmd.cluster_name)
    if cluster.policy is None:
        raise CommandNotAccepted(f"cluster {cluster.cluster_name!r} has no snapshot policy any more")
    name = automated_snapshot_name(cluster.cluster_name, cmd.slot)
    try:
        return _start_snapshot(app, cluster, name, f"policy {cluster.policy.schedule}"[:256], command_id,
                               SnapshotType.AUTOMATED, cluster.policy.keep_days)
    except CommandNotAccepted as refusal:
        cluster.skip_slot(cmd.slot, str(refusal.code), command_id)
        return [cluster]


def expire_snapshot(app: "SnapshotsApplication", cmd: ExpireSnapshot, command_id: str):
    snapshot = app.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
    if not snapshot.is_expired(app.clock.now()):
        raise CommandNotAccepted(f"snapshot {cmd.snapshot_name!r} has not expired, or is not settled")
    snapshot.delete(command_id, DeletionReason.EXPIRED)
    return [snapshot]


def copy_snapshot(app: "SnapshotsApplication", cmd: c.CopySnapshotRequested, command_id: str):
    snapshot = app.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
    target = app.check_copy_target(cmd.target_repository, snapshot.repository)
    snapshot.start_copy(target, command_id)
    return [snapshot]


def cancel_snapshot(app: "SnapshotsApplication", cmd: c.CancelSnapshotRequested, command_id: str):
    snapshot = app.get_snapshot_of(cmd.cluster_name, cmd.snapshot_name)
    snapshot.request_cancel(command_id)
    return [snapshot]


COMMAND_HANDLERS: dict[type[c.Command], Handler] = {
    c.RegisterCluster: register_cluster,
    c.ReportClusterStatus: report_cluster_status,
    c.RestartClusterRequested: restart_cluster,
    c.CreateSnapshotRequested: create_snapshot,
    c.RestoreSnapshotRequested: restore_snapshot,
    c.DeleteSnapshotRequested: delete_snapshot,
    c.CopySnapshotRequested: copy_snapshot,
    c.CancelSnapshotRequested: cancel_snapshot,
    c.SetSnapshotPolicy: set_policy,
    c.RemoveSnapshotPolicy: remove_policy,
}

#: The commands only the service issues (not in the codec's COMMAND_TYPES).
INTERNAL_COMMAND_HANDLERS: dict[type[c.Command], Handler] = {
    TakeScheduledSnapshot: take_scheduled_snapshot,
    ExpireSnapshot: expire_snapshot,
}

# A command type the codec accepts but nobody handles must fail here, at import, not after
# five retries in the DLQ.
_unhandled = set(COMMAND_TYPES.values()) - set(COMMAND_HANDLERS)
if _unhandled:
    raise ImportError("commands without a handler: " + ", ".join(sorted(t.__name__ for t in _unhandled)))
