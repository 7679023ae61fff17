"""The workflow's guarantees under faults, with fake drivers (unit tests; the real drivers
are tested in tests/integration, the whole system in tests/e2e): a copy past the limit
stops; the unlock is recorded only after a release has succeeded, however long that takes;
a re-freeze that fails still releases the first freeze; a stale workflow cannot touch the
next snapshot; a revoked partition's workflow is cancelled and released, not recorded."""

import asyncio
import threading
from pathlib import Path

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import DriverError, SnapshotFiles
from services.snapshots.drivers.base import CopyCancelled
from services.snapshots.freezing import Freezer
from services.snapshots.jobs import Jobs
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow


class FakeDriver:
    """A cluster whose freeze is a flag; each behaviour can be made to fail or wait."""

    name = "fake"

    def __init__(self, app=None, frozen=False, thaw_failures=0, freeze_error=None, copy_waits=False):
        self.app, self.frozen = app, frozen
        self.thaw_failures, self.freeze_error, self.copy_waits = thaw_failures, freeze_error, copy_waits
        self.copy_started, self.unlocked_when_thawed = threading.Event(), []

    def freeze(self, target):
        if self.freeze_error:
            raise DriverError(self.freeze_error)
        self.frozen = True
        return FakeFrozen(self)

    def thaw(self, target):
        if self.thaw_failures:
            self.thaw_failures -= 1
            raise OSError("connection lost")
        if self.app is not None:
            self.unlocked_when_thawed.append(not self.app.get_cluster("dws-one").is_creating_snapshot)
        self.frozen = False

    def cleanup(self, target):
        pass

    def is_frozen(self, target):
        return self.frozen


class FakeFrozen:
    def __init__(self, driver):
        self.driver = driver

    def copy_to(self, directory, cancel=None, progress=None):
        self.driver.copy_started.set()
        if self.driver.copy_waits and cancel.wait(30):
            raise CopyCancelled("the copy was cancelled")
        return SnapshotFiles(directory, 1, "abc")

    def release(self):
        self.driver.thaw("")

    def close(self):
        pass


def locked_cluster(snapshot="nightly-01") -> SnapshotsApplication:
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.handle("r", RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/x"))
    app.handle("c-" + snapshot, CreateSnapshotRequested(cluster_name="dws-one", snapshot_name=snapshot))
    return app


def workflow(app, driver, tmp_path=Path("/tmp/unused"), timeout=5.0) -> SnapshotWorkflow:
    freezer = Freezer({"sqlite": driver}, ThreadPool(2, "copy"), ThreadPool(2, "control"), Jobs(),
                      timeout, release_backoff=(0.01, 0.05))
    return SnapshotWorkflow(app, freezer, tmp_path, ThreadPool(2, "store"))


async def test_a_snapshot_past_the_limit_fails_with_a_clear_reason_and_unlocks():
    app = locked_cluster()
    driver = FakeDriver(copy_waits=True)
    await workflow(app, driver, timeout=0.3).run("dws-one")
    snapshot, cluster = app.get_snapshot("nightly-01"), app.get_cluster("dws-one")
    assert snapshot.status == "Failed" and "timed out after 0.3 s" in snapshot.failure_reason
    assert (cluster.status, cluster.task_status) == ("Available", None)
    assert not driver.frozen


async def test_the_unlock_is_recorded_only_after_a_release_that_kept_failing_succeeds():
    app = locked_cluster()
    driver = FakeDriver(app, thaw_failures=4)
    await workflow(app, driver).run("dws-one")
    assert driver.unlocked_when_thawed == [False]  # thawed while the store still said locked
    assert app.get_cluster("dws-one").status == "Available" and not driver.frozen


async def test_a_resumed_workflow_whose_refreeze_fails_lifts_the_first_freeze_before_unlocking():
    app = locked_cluster()  # the worker that froze it was killed: the cluster is still frozen
    driver = FakeDriver(app, frozen=True, freeze_error="canceling statement due to lock timeout")
    await workflow(app, driver).run("dws-one")
    assert not driver.frozen, "the store says Available while the first freeze refuses writes"
    assert driver.unlocked_when_thawed == [False]
    assert "lock timeout" in app.get_snapshot("nightly-01").failure_reason


async def test_a_stale_workflow_cannot_complete_or_unfreeze_the_next_snapshot(tmp_path):
    app = locked_cluster("nightly-01")
    driver = FakeDriver(copy_waits=True)
    stale = asyncio.create_task(workflow(app, driver, tmp_path).run("dws-one"))
    await asyncio.to_thread(driver.copy_started.wait, 5)
    app.fail_snapshot("dws-one", "nightly-01", "taken over by another instance")  # meanwhile...
    app.handle("c2", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-02"))
    driver.copy_waits = False
    await asyncio.wait_for(stale, 10)  # ...the stale copy of nightly-01 finishes late
    assert app.get_snapshot("nightly-02").status == "Creating"
    assert app.get_cluster("dws-one").snapshot_name == "nightly-02"
    assert driver.frozen, "the stale workflow lifted the next snapshot's freeze"


async def test_each_attempt_copies_into_its_own_directory_and_the_recorded_one_is_kept(tmp_path):
    app = locked_cluster()
    await workflow(app, FakeDriver(), tmp_path).run("dws-one")
    snapshot = app.get_snapshot("nightly-01")
    assert snapshot.attempt and snapshot.status == "Available"
    directory = workflow(app, FakeDriver(), tmp_path).directory_of("dws-one", "nightly-01", snapshot.attempt)
    assert directory == tmp_path / "dws-one" / "nightly-01" / snapshot.attempt


async def test_a_revoked_partitions_workflow_is_cancelled_released_and_left_for_its_new_owner():
    app = locked_cluster()
    driver = FakeDriver(copy_waits=True)
    running = workflow(app, driver)
    running.start("dws-one", partition=1)
    await asyncio.to_thread(driver.copy_started.wait, 5)
    assert running.cancel_partitions({0}) == 0
    assert running.cancel_partitions({1}) == 1
    await running.wait_idle()
    assert not driver.frozen
    assert app.get_cluster("dws-one").task_status == "Creating snapshot"  # resumed by the new owner
