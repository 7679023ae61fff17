"""Online snapshots in the application: `postgres` clusters only, the cluster unlocked while
the snapshot is still being created, the task ended by the outcome. On a SQLite store."""

import pytest

from events.commands import (CreateSnapshotRequested, RegisterCluster, ReportClusterStatus,
                             RestartClusterRequested)
from services.snapshots import bootstrap
from services.snapshots.client import settled
from services.snapshots.published import to_envelope
from services.snapshots.settings import Settings
from tests.integration.test_application import rejected, stored_types


@pytest.fixture
def app(tmp_path):
    application = bootstrap.make_application(Settings(event_store="sqlite", data_dir=tmp_path,
                                                      allowed_targets="*"))
    application.handle("reg-1", RegisterCluster(cluster_name="dws-lite-1", driver="sqlite",
                                                target="/data/lite.sqlite"))
    application.handle("reg-2", RegisterCluster(cluster_name="dws-pg-1", driver="postgres",
                                                target="postgresql://postgres@127.0.0.1:5432/wh"))
    yield application
    application.close()


def published(app) -> list:
    found = []
    for notification in app.recorder.select_notifications(1, 1000):
        envelope = to_envelope(app.mapper, notification, "test")
        if envelope is not None:
            found.append(envelope)
    return found


def test_online_is_refused_for_a_cluster_that_is_not_postgres(app):
    command = CreateSnapshotRequested(cluster_name="dws-lite-1", snapshot_name="nightly-01", online=True)
    assert app.handle("c1", command) == "rejected"
    [rejection] = rejected(app)
    assert rejection.code == "invalid_command"
    assert "online snapshots need a postgres cluster" in rejection.reason and "sqlite" in rejection.reason
    assert "ClusterLocked" not in stored_types(app)


def test_an_online_snapshot_keeps_the_task_until_its_outcome(app):
    app.handle("s1", ReportClusterStatus(cluster_name="dws-pg-1", status="Low performance"))
    assert app.handle("c1", CreateSnapshotRequested(cluster_name="dws-pg-1", snapshot_name="nightly-01",
                                                    online=True)) == "accepted"
    app.make_read_only("dws-pg-1", "nightly-01")
    app.unlock_online("dws-pg-1", "nightly-01")
    app.unlock_online("dws-pg-1", "nightly-01")  # a repeated unlock records nothing more
    cluster = app.get_cluster("dws-pg-1")
    assert (cluster.status, cluster.task_status, cluster.unlocked) == ("Low performance", "Creating snapshot", True)
    assert app.get_snapshot("nightly-01").status == "Creating"

    for command_id, command in (("r1", RestartClusterRequested(cluster_name="dws-pg-1")),
                                ("c2", CreateSnapshotRequested(cluster_name="dws-pg-1", snapshot_name="nightly-02")),
                                ("s2", ReportClusterStatus(cluster_name="dws-pg-1", status="Available"))):
        assert app.handle(command_id, command) == "rejected"
    assert [r.code for r in rejected(app)] == ["snapshot_in_progress"] * 3

    assert app.complete_snapshot("dws-pg-1", "nightly-01", 4096, None)
    cluster = app.get_cluster("dws-pg-1")
    assert (cluster.status, cluster.task_status, cluster.unlocked) == ("Low performance", None, False)
    events = [e for e in published(app) if e.correlationid == "c1"]
    assert [e.type for e in events] == ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly",
                                        "ClusterUnlocked", "SnapshotCompleted"]
    assert events[1].data["online"] is True
    assert events[3].data["task_status"] == "Creating snapshot"
    pairs = [(e.type, e.data) for e in events]
    assert not settled("CreateSnapshotRequested", pairs[:4])  # `create --wait` goes on past the unlock
    assert settled("CreateSnapshotRequested", pairs)
    assert app.handle("c3", CreateSnapshotRequested(cluster_name="dws-pg-1", snapshot_name="nightly-03")) == "accepted"


def test_an_online_snapshot_that_fails_after_the_unlock_ends_the_task(app):
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-pg-1", snapshot_name="nightly-01", online=True))
    app.make_read_only("dws-pg-1", "nightly-01")
    app.unlock_online("dws-pg-1", "nightly-01")
    assert app.fail_snapshot("dws-pg-1", "nightly-01", "pg_dump failed")
    assert app.get_cluster("dws-pg-1").task_status is None
    assert [e.type for e in published(app) if e.correlationid == "c1"][-2:] == ["ClusterUnlocked", "SnapshotFailed"]
    assert app.handle("r1", RestartClusterRequested(cluster_name="dws-pg-1")) == "accepted"


def test_an_offline_snapshot_is_as_before(app):
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-pg-1", snapshot_name="nightly-01"))
    app.make_read_only("dws-pg-1", "nightly-01")
    app.complete_snapshot("dws-pg-1", "nightly-01", 4096, None)
    events = [e for e in published(app) if e.correlationid == "c1"]
    assert [e.type for e in events][-2:] == ["SnapshotCompleted", "ClusterUnlocked"]
    assert events[1].data["online"] is False and events[-1].data["task_status"] is None
    pairs = [(e.type, e.data) for e in events]
    assert not settled("CreateSnapshotRequested", pairs[:-1]) and settled("CreateSnapshotRequested", pairs)
