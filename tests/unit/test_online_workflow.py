"""The online workflow with fake drivers: released and unlocked once the copy is pinned, the
freeze's traces removed only after the copy; a copy that fails before it is pinned keeps
the online order; a workflow cancelled after the unlock records nothing, and the next run
fails the snapshot instead of copying a later moment."""

import asyncio
import threading
from pathlib import Path

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import DriverError, SnapshotFiles
from services.snapshots.drivers.base import CopyCancelled
from services.snapshots import metrics
from services.snapshots.freezing import Freezer
from services.snapshots.jobs import Jobs
from services.snapshots.repository import LocalRepository, Repositories
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow


class OnlineFake:
    name = "postgres"

    def __init__(self, app, fail_before_pinned=False, hold_after_pinned=False, fail_after_pinned=False):
        self.app, self.frozen, self.log = app, False, []
        self.fail_before_pinned, self.hold_after_pinned = fail_before_pinned, hold_after_pinned
        self.fail_after_pinned = fail_after_pinned
        self.go_on = threading.Event()

    def freeze(self, target):
        self.frozen = True
        self.log.append("freeze")
        return OnlineFrozen(self)

    def thaw(self, target):
        self.frozen = False
        self.log.append("thaw")

    def cleanup(self, target):
        self.log.append("cleanup")

    def is_frozen(self, target):
        return self.frozen


class OnlineFrozen:
    def __init__(self, driver):
        self.driver = driver

    def copy_online(self, directory, cancel, pinned, progress=None):
        if self.driver.fail_before_pinned:
            raise DriverError("pg_dump failed: no such table")
        pinned()
        self.driver.log.append("pinned")
        if self.driver.hold_after_pinned and cancel.wait(30):
            raise CopyCancelled("the copy was cancelled")
        if self.driver.fail_after_pinned:
            raise DriverError("pg_dump failed: the server went away")
        self.driver.go_on.wait(30)
        cluster = self.driver.app.get_cluster("dws-pg")
        self.driver.log.append(f"copied ({cluster.status}, unlocked={cluster.unlocked})")
        return SnapshotFiles(directory, 1, "abc")

    def release(self):
        self.driver.thaw("")

    def close(self):
        pass


def online_request() -> SnapshotsApplication:
    app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.handle("r", RegisterCluster(cluster_name="dws-pg", driver="postgres", target="postgresql://h/db"))
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-pg", snapshot_name="online-1", online=True))
    return app


def workflow(app, driver, tmp_path: Path) -> SnapshotWorkflow:
    freezer = Freezer({"postgres": driver}, ThreadPool(2, "copy"), ThreadPool(2, "control"), Jobs(),
                      30.0, release_backoff=(0.01, 0.05))
    return SnapshotWorkflow(app, freezer, tmp_path, ThreadPool(2, "store"))


def stored(app) -> list[str]:
    return [type(app.mapper.to_domain_event(n)).__name__ for n in app.recorder.select_notifications(1, 100)]


async def until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_the_cluster_is_unlocked_while_the_copy_goes_on_and_cleaned_up_after(tmp_path):
    app = online_request()
    driver = OnlineFake(app)
    flow = workflow(app, driver, tmp_path)
    flow.start("dws-pg")
    await until(lambda: app.get_cluster("dws-pg").unlocked)
    assert driver.log[0] == "freeze" and "thaw" in driver.log and not driver.frozen  # released first
    assert "cleanup" not in driver.log
    assert app.get_snapshot("online-1").status == "Creating"
    driver.go_on.set()
    await flow.wait_idle()
    await until(lambda: "cleanup" in driver.log)
    assert "copied (Available, unlocked=True)" in driver.log
    assert driver.log.index("copied (Available, unlocked=True)") < driver.log.index("cleanup")
    assert stored(app)[-4:] == ["ClusterReadOnly", "ClusterUnlocked", "SnapshotCompleted", "SnapshotTaskEnded"]
    assert app.get_cluster("dws-pg").task_status is None


async def test_a_copy_that_fails_before_it_is_pinned_keeps_the_online_order(tmp_path):
    app = online_request()
    driver = OnlineFake(app, fail_before_pinned=True)
    flow = workflow(app, driver, tmp_path)
    flow.start("dws-pg")
    await flow.wait_idle()
    assert stored(app)[-4:] == ["ClusterReadOnly", "ClusterUnlocked", "SnapshotFailed", "SnapshotTaskEnded"]
    assert app.get_snapshot("online-1").failure_reason == "pg_dump failed: no such table"
    assert not driver.frozen and app.get_cluster("dws-pg").task_status is None


async def test_an_online_copy_cancelled_after_the_unlock_is_failed_by_the_next_run_not_copied_again(tmp_path):
    app = online_request()
    driver = OnlineFake(app, hold_after_pinned=True)
    flow = workflow(app, driver, tmp_path)
    flow.start("dws-pg")
    await until(lambda: app.get_cluster("dws-pg").unlocked)
    (tmp_path / "dws-pg" / "online-1" / "partial").mkdir(parents=True)
    assert flow.cancel_partitions({None}) == 1  # its partition was revoked
    await flow.wait_idle()
    assert stored(app)[-1] == "ClusterUnlocked" and app.get_cluster("dws-pg").is_creating_snapshot

    freezes = driver.log.count("freeze")
    flow.start("dws-pg")  # the partition's new owner (or the reconciler) resumes it
    await flow.wait_idle()
    assert driver.log.count("freeze") == freezes  # nothing frozen or copied again
    assert stored(app)[-2:] == ["SnapshotFailed", "SnapshotTaskEnded"]
    assert "interrupted after the cluster was unlocked" in app.get_snapshot("online-1").failure_reason
    await until(lambda: not (tmp_path / "dws-pg" / "online-1").exists())
    assert app.get_cluster("dws-pg").task_status is None and not driver.frozen


class StreamingRepository(LocalRepository):
    """A repository whose source has no online copy (a driver that cannot stream one)."""

    url = "s3://bucket/prefix"

    def source(self, frozen, key):
        return StreamOnly(frozen)


class StreamOnly:
    def __init__(self, frozen):
        self.frozen = frozen

    def copy_to(self, directory, cancel=None, progress=None):
        return self.frozen.copy_to(directory, cancel, progress)


async def test_an_online_snapshot_through_a_source_without_an_online_copy_fails_with_its_reason_and_unlocks(tmp_path):
    app = online_request()
    driver = OnlineFake(app)
    streaming = StreamingRepository(tmp_path / "s3")
    flow = SnapshotWorkflow(app, workflow(app, driver, tmp_path).freezer,
                            Repositories(streaming, LocalRepository(tmp_path), tmp_path / "staging"),
                            ThreadPool(2, "store"))
    flow.start("dws-pg")
    await flow.wait_idle()
    assert stored(app)[-3:] == ["ClusterUnlocked", "SnapshotFailed", "SnapshotTaskEnded"]
    assert "this driver cannot take an online snapshot" in app.get_snapshot("online-1").failure_reason
    assert not driver.frozen and app.get_cluster("dws-pg").task_status is None


def read_only_count() -> float:
    return sum(sample.value for metric in metrics.READ_ONLY_SECONDS.collect() for sample in metric.samples
               if sample.name.endswith("_count") and sample.labels == {"driver": "postgres"})


async def test_the_read_only_time_of_an_online_snapshot_is_counted_once_whatever_its_end(tmp_path):
    """At the release after the pin, not again (for the whole copy) when the copy then fails."""
    for options in ({}, {"fail_after_pinned": True}):
        app = online_request()
        driver = OnlineFake(app, **options)
        driver.go_on.set()
        before = read_only_count()
        flow = workflow(app, driver, tmp_path)
        flow.start("dws-pg")
        await flow.wait_idle()
        assert stored(app)[-3:-1] == ["ClusterUnlocked", "SnapshotFailed" if options else "SnapshotCompleted"]
        assert read_only_count() == before + 1
