"""Online snapshots into the S3 repository: the real workflow, the real PostgreSQL and
moto's S3 server. pg_dump's output is streamed into the multipart upload while a writer
inserts all along: the cluster is writable again while the dump is still being uploaded,
and the restored copy holds exactly the rows committed before the freeze. A dump that
fails after the unlock, or is cancelled (its partition revoked), aborts its upload and leaves
nothing in the bucket; the next run of a cancelled one fails it.

To hold the copy at a known point, pg_dump is stopped (SIGSTOP) once it holds its locks,
as in tests/e2e/test_online_snapshots.py."""

import asyncio
import os
import signal

import psycopg
import pytest

from events.commands import CreateSnapshotRequested, RegisterCluster, RestoreSnapshotRequested
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers.postgres import PostgresDriver
from services.snapshots.freezing import Freezer
from services.snapshots.jobs import Jobs
from services.snapshots.repository import LocalRepository, Repositories
from services.snapshots.s3_repository import S3Repository
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow
from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.test_online_snapshots import Writer, pause_dump_once_it_holds_its_locks

CLUSTER = "dws-pg-online"
PART = 5 << 20


@pytest.fixture
def target(postgres_database):
    """The writer's table `ticks` and enough data for several 5 MiB parts."""
    dsn = postgres_dsn(postgres_database)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS body "
                   "FROM generate_series(1, 300000) g")
    yield dsn
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{CLUSTER}-copy" WITH (FORCE)')


@pytest.fixture
def parts(tmp_path, s3_server, s3_env, target):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/online"
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.handle("r", RegisterCluster(cluster_name=CLUSTER, driver="postgres", target=target))
    repositories = Repositories(S3Repository(url, tmp_path / "staging", part_size=PART),
                                LocalRepository(tmp_path / "snapshots"), tmp_path / "staging")
    freezer = Freezer({"postgres": PostgresDriver(compression=0)}, ThreadPool(2, "copy"), ThreadPool(2, "control"),
                      Jobs(first_delay=0.05, max_delay=0.2), 120, release_backoff=(0.05, 0.2))
    return app, SnapshotWorkflow(app, freezer, repositories, ThreadPool(2, "store")), bucket, url


def events(app) -> list:
    return [app.mapper.to_domain_event(n) for batch in app.notifications() for n in batch]


def of_snapshot(app, snapshot_name: str) -> list:
    return [e for e in events(app) if getattr(e, "snapshot_name", None) == snapshot_name
            and type(e).__name__ != "SnapshotTaskEnded"]


async def test_an_online_snapshot_streams_to_s3_while_writes_go_on_and_restores_as_of_the_freeze(
        parts, s3_server, target):
    app, workflow, bucket, url = parts
    writer = Writer(target)
    writer.start()
    await asyncio.to_thread(writer.wait_for_commits, 20)
    app.handle("c1", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="online-s3-1", online=True))
    workflow.start(CLUSTER)
    pid = await asyncio.to_thread(pause_dump_once_it_holds_its_locks, target)
    try:
        while not app.get_cluster(CLUSTER).unlocked:  # released while pg_dump is held mid-way
            await asyncio.sleep(0.01)
        cluster, snapshot = app.get_cluster(CLUSTER), app.get_snapshot("online-s3-1")
        assert (cluster.status, cluster.task_status, snapshot.status) == ("Available", "Creating snapshot", "Creating")
        await asyncio.to_thread(writer.wait_for_commits, 20)  # writes go through during the copy
        assert [u["Key"].rsplit("/", 1)[1] for u in s3_server.uploads(bucket)] == ["database.pgdump"]
        assert s3_server.objects(bucket) == {}  # no manifest, no snapshot yet
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.wait_for(workflow.wait_idle(), 300)
    writer.stop()

    snapshot = app.get_snapshot("online-s3-1")
    assert snapshot.status == "Available" and snapshot.repository == url
    history = of_snapshot(app, "online-s3-1")
    assert [type(e).__name__ for e in history] == ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly",
                                                   "ClusterUnlocked", "SnapshotCompleted"]
    read_only, unlocked, completed = (e.timestamp for e in history[2:])
    print(f"\nonline snapshot to S3: read-only for {(unlocked - read_only).total_seconds():.3f} s "
          f"of a {(completed - read_only).total_seconds():.3f} s copy (pg_dump held mid-way)")
    objects = s3_server.objects(bucket)
    data_key = f"online/{CLUSTER}/online-s3-1/{snapshot.attempt}/database.pgdump"
    assert sorted(objects) == [data_key, data_key.replace("database.pgdump", "manifest.json")]
    assert objects[data_key] == snapshot.size_bytes > PART and s3_server.uploads(bucket) == []

    app.handle("x1", RestoreSnapshotRequested(cluster_name=CLUSTER, snapshot_name="online-s3-1",
                                              target_cluster_name=f"{CLUSTER}-copy"))
    await workflow.restore("online-s3-1")
    with psycopg.connect(app.get_cluster(f"{CLUSTER}-copy").target) as db:
        in_copy = [i for (i,) in db.execute("SELECT id FROM ticks ORDER BY id")]
        assert db.execute("SELECT count(*) FROM facts").fetchone()[0] == 300000
    # Exactly the rows committed before the freeze (see the e2e test of the local repository).
    log, committed = writer.log, writer.committed()
    assert in_copy == [i for i in committed if i <= in_copy[-1]]
    last = log.index(("committed", in_copy[-1]))
    next_commit = next(n for n in range(last + 1, len(log)) if log[n][0] == "committed")
    assert ("refused", None) in log[last + 1:next_commit]
    assert all(outcome == "committed" for outcome, _ in log[next_commit:])
    assert len(committed) - len(in_copy) >= 20


async def test_an_online_dump_that_fails_after_the_unlock_aborts_its_upload(parts, s3_server, target):
    app, workflow, bucket, _ = parts
    app.handle("c1", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="online-s3-2", online=True))
    workflow.start(CLUSTER)
    pid = await asyncio.to_thread(pause_dump_once_it_holds_its_locks, target)
    try:
        while not app.get_cluster(CLUSTER).unlocked:
            await asyncio.sleep(0.01)
        assert len(s3_server.uploads(bucket)) == 1  # the upload is open
        with psycopg.connect(target, autocommit=True) as db:  # the dump's session dies
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name LIKE 'dws-snapshot-%%' AND datname = current_database()")
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.wait_for(workflow.wait_idle(), 120)
    await asyncio.wait_for(workflow.freezer.jobs.wait_idle(), 60)

    snapshot, cluster = app.get_snapshot("online-s3-2"), app.get_cluster(CLUSTER)
    assert snapshot.status == "Failed" and "pg_dump failed" in snapshot.failure_reason
    assert [type(e).__name__ for e in of_snapshot(app, "online-s3-2")][-2:] == ["ClusterUnlocked", "SnapshotFailed"]
    assert (cluster.status, cluster.task_status) == ("Available", None)
    assert s3_server.uploads(bucket) == [] and s3_server.objects(bucket) == {}
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO ticks DEFAULT VALUES")


async def test_an_online_upload_cancelled_after_the_unlock_is_aborted_and_the_next_run_fails_it(
        parts, s3_server, target):
    app, workflow, bucket, _ = parts
    app.handle("c1", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="online-s3-3", online=True))
    workflow.start(CLUSTER)
    pid = await asyncio.to_thread(pause_dump_once_it_holds_its_locks, target)
    try:
        while not app.get_cluster(CLUSTER).unlocked:
            await asyncio.sleep(0.01)
        assert len(s3_server.uploads(bucket)) == 1
        assert workflow.cancel_partitions({None}) == 1  # its partition was revoked
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.wait_for(workflow.wait_idle(), 120)
    assert s3_server.uploads(bucket) == [] and s3_server.objects(bucket) == {}
    assert app.get_snapshot("online-s3-3").status == "Creating"  # nothing recorded: the owner's turn

    await workflow.run(CLUSTER)  # the partition's new owner: the data of that moment is gone
    await asyncio.wait_for(workflow.freezer.jobs.wait_idle(), 60)
    snapshot, cluster = app.get_snapshot("online-s3-3"), app.get_cluster(CLUSTER)
    assert snapshot.status == "Failed" and "interrupted after the cluster was unlocked" in snapshot.failure_reason
    assert (cluster.status, cluster.task_status) == ("Available", None)
    assert s3_server.uploads(bucket) == [] and s3_server.objects(bucket) == {}
