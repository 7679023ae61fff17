"""The workflow with an S3 repository (moto's server) and the real SQLite driver: the
snapshot recorded with its repository, restored from it, a repository that cannot be
written failing the snapshot and unlocking the cluster, a copy failing cleanly, the
snapshot's files and copies removed on delete, and by the scheduler's next pass when the
delete job was lost in a crash."""

import asyncio
import sqlite3

import pytest

from events.commands import (CopySnapshotRequested, CreateSnapshotRequested, DeleteSnapshotRequested,
                             RegisterCluster, RestoreSnapshotRequested)
from services.snapshots.application import SnapshotsApplication
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.drivers import SQLiteDriver
from services.snapshots.freezing import Freezer
from services.snapshots.jobs import Jobs
from services.snapshots.repository import LocalRepository, Repositories
from services.snapshots.s3_repository import S3Repository
from services.snapshots.scheduler import Scheduler
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow


@pytest.fixture
def parts(tmp_path, s3_server, s3_env):
    warehouse = tmp_path / "warehouse.sqlite"
    create_demo_warehouse(warehouse, customers=20, sales=100)
    primary, dr = s3_server.new_bucket(), s3_server.new_bucket()
    urls = f"s3://{primary}/prod", f"s3://{dr}/dr"
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, copy_targets=(urls[1],))
    app.handle("r", RegisterCluster(cluster_name="dws-one", driver="sqlite", target=str(warehouse)))
    local = LocalRepository(tmp_path / "snapshots")
    repositories = Repositories(S3Repository(urls[0], tmp_path / "staging"), local, tmp_path / "staging", (urls[1],))
    freezer = Freezer({"sqlite": SQLiteDriver(tmp_path / "clusters")}, ThreadPool(2, "copy"),
                      ThreadPool(2, "control"), Jobs(first_delay=0.05, max_delay=0.2), 30)
    return app, SnapshotWorkflow(app, freezer, repositories, ThreadPool(2, "store")), urls, (primary, dr), tmp_path


def rows(path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM sales ORDER BY id").fetchall()


async def test_snapshot_restore_copy_and_delete_through_the_workflow(parts, s3_server):
    app, workflow, urls, (primary, dr), tmp_path = parts
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01"))
    await workflow.run("dws-one")
    snapshot = app.get_snapshot("nightly-01")
    assert snapshot.status == "Available" and snapshot.repository == urls[0]
    assert sorted(s3_server.objects(primary)) == [f"prod/dws-one/nightly-01/{snapshot.attempt}/{name}"
                                                  for name in ("cluster.sqlite", "manifest.json")]
    assert not list((tmp_path / "staging").rglob("*.sqlite"))

    app.handle("x1", RestoreSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01",
                                              target_cluster_name="dws-copy"))
    await workflow.restore("nightly-01")
    assert rows(app.get_cluster("dws-copy").target) == rows(tmp_path / "warehouse.sqlite")

    assert app.handle("k1", CopySnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01",
                                                  target_repository=urls[1])) == "accepted"
    await workflow.copy("nightly-01", urls[1])
    assert app.get_snapshot("nightly-01").copies == {urls[1]: ""}
    assert len(s3_server.objects(dr)) == 2

    app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01"))
    workflow.delete_files("dws-one", "nightly-01")
    await workflow.freezer.jobs.wait_idle()
    assert s3_server.objects(primary) == {} and s3_server.objects(dr) == {}


async def test_a_repository_that_cannot_be_written_fails_the_snapshot_and_unlocks(parts, s3_server):
    app, workflow, urls, (primary, _), _ = parts
    s3_server.client().delete_bucket(Bucket=primary)
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-02"))
    await workflow.run("dws-one")
    snapshot, cluster = app.get_snapshot("nightly-02"), app.get_cluster("dws-one")
    assert snapshot.status == "Failed" and "NoSuchBucket" in snapshot.failure_reason
    assert (cluster.status, cluster.task_status) == ("Available", None)


async def test_a_copy_whose_source_is_damaged_fails_and_leaves_nothing_at_the_target(parts, s3_server):
    app, workflow, urls, (primary, dr), _ = parts
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-03"))
    await workflow.run("dws-one")
    attempt = app.get_snapshot("nightly-03").attempt
    s3_server.client().put_object(Bucket=primary, Key=f"prod/dws-one/nightly-03/{attempt}/cluster.sqlite",
                                  Body=b"not the snapshot")
    app.handle("k1", CopySnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-03", target_repository=urls[1]))
    await workflow.copy("nightly-03", urls[1])
    await asyncio.wait_for(workflow.freezer.jobs.wait_idle(), 30)
    assert app.get_snapshot("nightly-03").copies == {}
    events = [app.mapper.to_domain_event(n) for batch in app.notifications() for n in batch]
    [failed] = [e for e in events if type(e).__name__ == "SnapshotCopyFailed"]
    assert "does not match the snapshot's sha256" in failed.reason and failed.target_repository == urls[1]
    assert s3_server.objects(dr) == {} and s3_server.uploads(dr) == []


async def test_objects_a_lost_delete_job_left_in_s3_and_in_a_copy_are_removed_by_the_next_scheduler_pass(
        parts, s3_server):
    app, workflow, urls, (primary, dr), tmp_path = parts
    for name in ("nightly-04", "nightly-05"):
        app.handle(f"c-{name}", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name=name))
        await workflow.run("dws-one")
    app.handle("k1", CopySnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-04", target_repository=urls[1]))
    await workflow.copy("nightly-04", urls[1])
    # SnapshotDeleted is stored, and the worker dies before its delete job runs (the job
    # lives in the dead process only): every object stays, in the bucket and in the copy.
    assert app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-04")) == "accepted"
    kept = {k: v for k, v in s3_server.objects(primary).items() if "/nightly-05/" in k}
    assert len(s3_server.objects(primary)) == 4 and len(s3_server.objects(dr)) == 2

    # The restarted worker, configured without the copy target since: the snapshot's
    # recorded copies are looked at all the same.
    staging = tmp_path / "staging-2"
    restarted = SnapshotWorkflow(app, Freezer({}, ThreadPool(1, "copy"), ThreadPool(1, "control"),
                                              Jobs(first_delay=0.05, max_delay=0.2), 30),
                                 Repositories(S3Repository(urls[0], staging), LocalRepository(tmp_path / "snapshots"),
                                              staging), ThreadPool(2, "store"))
    scheduler = Scheduler(app, restarted, ThreadPool(1, "store"))
    assert await scheduler.tick(lambda name: 0) == 0
    await asyncio.wait_for(restarted.freezer.jobs.wait_idle(), 30)
    assert s3_server.objects(primary) == kept and s3_server.objects(dr) == {}
    assert app.get_snapshot("nightly-05").status == "Available"
