"""The workflow's own limit: a driver that never returns cannot hold a cluster read-only
forever. (A unit test: the hanging driver is a fake; the real pg_dump hang is tested in
tests/integration/test_postgres_driver.py.)"""

import threading
from pathlib import Path

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.workflow import SnapshotWorkflow


class HangingDriver:
    name = "hanging"

    def __init__(self):
        self.released = threading.Event()
        self.unblock = threading.Event()

    def freeze(self, target):
        driver = self

        class Frozen:
            def copy_to(self, directory):
                driver.unblock.wait(30)
                raise RuntimeError("unblocked")

            def release(self):
                driver.released.set()

        return Frozen()


async def test_a_snapshot_past_the_limit_fails_with_a_clear_reason_and_unlocks():
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.handle("r", RegisterCluster(cluster_name="dws-hung", driver="sqlite", target="/x"))
    app.handle("c", CreateSnapshotRequested(cluster_name="dws-hung", snapshot_name="never-ends"))
    driver = HangingDriver()
    workflow = SnapshotWorkflow(app, {"sqlite": driver}, Path("/tmp/unused"), timeout_seconds=0.3)
    try:
        await workflow.run("dws-hung")
    finally:
        driver.unblock.set()
    snapshot, cluster = app.get_snapshot("never-ends"), app.get_cluster("dws-hung")
    assert snapshot.status == "Failed" and "timed out after 0.3 s" in snapshot.failure_reason
    assert (cluster.status, cluster.task_status) == ("Available", None)
    assert driver.released.is_set()


class UnreleasableDriver:
    name = "unreleasable"

    def freeze(self, target):
        class Frozen:
            def copy_to(self, directory):
                from services.snapshots.drivers import SnapshotFiles
                return SnapshotFiles(directory, 1, "")

            def release(self):
                raise OSError("connection lost")

        return Frozen()


async def test_a_cluster_whose_freeze_cannot_be_lifted_is_not_recorded_as_unlocked():
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.handle("r", RegisterCluster(cluster_name="dws-stuck", driver="sqlite", target="/x"))
    app.handle("c", CreateSnapshotRequested(cluster_name="dws-stuck", snapshot_name="stuck-1"))
    workflow = SnapshotWorkflow(app, {"sqlite": UnreleasableDriver()}, Path("/tmp/unused"), 5,
                                release_attempts=1)
    await workflow.run("dws-stuck")
    assert app.get_cluster("dws-stuck").task_status == "Creating snapshot"  # left for a resume
    assert [c.cluster_name for c in app.clusters_creating_snapshots()] == ["dws-stuck"]
