"""Policies and retention on the real application: a SQLite event store, the real
workflow copying a SQLite warehouse, the scheduler driven by a test clock (clock.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from events.commands import (CancelSnapshotRequested, CreateSnapshotRequested, DeleteSnapshotRequested, RegisterCluster,
                             RemoveSnapshotPolicy, ReportClusterStatus, SetSnapshotPolicy)
from services.snapshots import bootstrap
from services.snapshots.application import Outcome
from services.snapshots.clock import set_test_clock
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.domain import snapshot_id
from services.snapshots.handlers import ExpireSnapshot, TakeScheduledSnapshot
from services.snapshots.policies import expiry_command_id, slot_command_id
from services.snapshots.scheduler import Scheduler
from services.snapshots.settings import Settings

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
CLUSTER = "dws-life-1"


def owns_all(name: str) -> int:
    return 0


class Parts:
    def __init__(self, tmp_path):
        self.clock_file = tmp_path / "clock"
        self.set_time(T0)
        settings = Settings(data_dir=tmp_path / "data", event_store="sqlite", test_clock_file=self.clock_file,
                            allowed_targets="*")
        self.app = bootstrap.make_application(settings)
        self.workflow = bootstrap.make_workflow(self.app, bootstrap.make_drivers(settings),
                                                settings.snapshot_repository, 30)
        self.scheduler = Scheduler(self.app, self.workflow, self.workflow._store)
        warehouse = tmp_path / "warehouse.sqlite"
        create_demo_warehouse(warehouse, 20, 100)
        assert self.app.handle("reg", RegisterCluster(cluster_name=CLUSTER, driver="sqlite",
                                                      target=str(warehouse))) == Outcome.ACCEPTED

    def set_time(self, moment: datetime) -> None:
        set_test_clock(self.clock_file, moment)

    def events(self, type_name: str) -> list:
        return [e for e in (self.app.mapper.to_domain_event(n)
                            for n in self.app.recorder.select_notifications(1, 10_000))
                if type(e).__name__ == type_name]

    def rejection_codes(self) -> list[str]:
        return [e.code for e in self.events("CommandRejected")]

    async def tick(self) -> int:
        issued = await self.scheduler.tick(owns_all)
        await self.workflow.wait_idle()
        await self.workflow.freezer.jobs.wait_idle()
        return issued


@pytest.fixture
def parts(tmp_path):
    return Parts(tmp_path)


def test_a_policy_is_validated_set_replaced_and_removed(parts):
    app = parts.app
    assert app.handle("p0", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="every day", keep_days=7)) == Outcome.REJECTED
    assert app.handle("p1", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="0 3 * * *", keep_days=32)) == Outcome.REJECTED
    assert app.handle("p2", RemoveSnapshotPolicy(cluster_name=CLUSTER)) == Outcome.REJECTED
    assert parts.rejection_codes() == ["invalid_policy"] * 3
    assert app.handle("p3", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="0 3 * * *", keep_days=7)) == Outcome.ACCEPTED
    assert app.get_cluster(CLUSTER).policy.schedule == "0 3 * * *"
    assert app.handle("p4", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 hour)", keep_days=2)) == Outcome.ACCEPTED
    assert app.get_cluster(CLUSTER).policy.keep_days == 2
    assert app.handle("p5", RemoveSnapshotPolicy(cluster_name=CLUSTER)) == Outcome.ACCEPTED
    assert app.get_cluster(CLUSTER).policy is None
    assert [e.schedule for e in parts.events("SnapshotPolicySet")] == ["0 3 * * *", "rate(1 hour)"]
    assert len(parts.events("SnapshotPolicyRemoved")) == 1
    assert app.handle("p6", SetSnapshotPolicy(cluster_name="dws-nope", schedule="rate(1 hour)", keep_days=2)) == Outcome.REJECTED
    assert parts.rejection_codes()[-1] == "unknown_cluster"


async def test_each_slot_fires_once_and_after_downtime_only_the_latest(parts):
    parts.app.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 hour)", keep_days=3))
    assert await parts.tick() == 0, "09:00 came before the policy was set"
    parts.set_time(T0.replace(hour=10, minute=0, second=1))
    assert await parts.tick() == 1
    assert await parts.tick() == 0, "a second tick in the same slot"
    snapshot = parts.app.get_snapshot("auto-dws-life-1-202603011000")
    assert (snapshot.snapshot_type, snapshot.status, snapshot.retention_days) == ("Automated", "Available", 3)
    parts.set_time(T0.replace(hour=14, minute=20))  # 11:00, 12:00, 13:00 missed; 14:00 is the latest
    assert await parts.tick() == 1
    started = sorted(e.snapshot_name for e in parts.events("SnapshotStarted"))
    assert started == ["auto-dws-life-1-202603011000", "auto-dws-life-1-202603011400"]
    # The same slot's command again (another instance, a restart) is a no-op.
    slot = T0.replace(hour=14, minute=0)
    assert parts.app.handle(slot_command_id(CLUSTER, slot), TakeScheduledSnapshot(
        cluster_name=CLUSTER, slot=slot)) == Outcome.DUPLICATE
    records = parts.events("CommandReceived")
    assert {r.authtype for r in records if r.command_type == "TakeScheduledSnapshot"} == {"system"}


async def test_a_slot_that_cannot_be_taken_is_recorded_as_skipped_with_the_reason(parts):
    app = parts.app
    app.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="*/10 * * * *", keep_days=3))
    app.handle("busy", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="manual-1"))  # locked, not run
    parts.set_time(T0.replace(minute=40))
    assert await parts.tick() == 1
    parts.workflow.start(CLUSTER)
    await parts.workflow.wait_idle()
    app.handle("down", ReportClusterStatus(cluster_name=CLUSTER, status="Unavailable"))
    parts.set_time(T0.replace(minute=50))
    assert await parts.tick() == 1
    app.handle("up", ReportClusterStatus(cluster_name=CLUSTER, status="Available"))
    app.handle("taken", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="auto-dws-life-1-202603011000"))
    await parts.workflow.wait_idle()
    parts.workflow.start(CLUSTER)
    await parts.workflow.wait_idle()
    parts.set_time(T0.replace(hour=10, minute=1))
    assert await parts.tick() == 1
    skipped = [(e.slot, e.reason) for e in parts.events("ScheduledSnapshotSkipped")]
    assert skipped == [("2026-03-01T09:40:00+00:00", "snapshot_in_progress"),
                       ("2026-03-01T09:50:00+00:00", "cluster_not_ready"),
                       ("2026-03-01T10:00:00+00:00", "duplicate_snapshot_name")]
    assert await parts.tick() == 0


async def test_expiry_deletes_exactly_the_expired_snapshots_once_by_the_keep_days_they_were_taken_with(parts):
    app = parts.app
    app.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 day)", keep_days=2))
    parts.set_time(datetime(2026, 3, 2, 0, 5, tzinfo=timezone.utc))
    await parts.tick()  # auto-...202603020000, kept 2 days
    app.handle("p2", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 day)", keep_days=5))
    parts.set_time(datetime(2026, 3, 3, 0, 5, tzinfo=timezone.utc))
    await parts.tick()  # auto-...202603030000, kept 5 days
    for name, days in (("manual-keep-1", 1), ("manual-forever", -1)):
        app.handle(name, CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name=name, retention_days=days))
        parts.workflow.start(CLUSTER)
        await parts.workflow.wait_idle()
    assert app.handle("bad", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="manual-bad",
                                                     retention_days=0)) == Outcome.REJECTED
    assert app.handle("hand", DeleteSnapshotRequested(cluster_name=CLUSTER,
                                                      snapshot_name="auto-dws-life-1-202603020000")) == Outcome.REJECTED
    assert parts.rejection_codes() == ["invalid_command", "snapshot_automated"]
    assert parts.events("CommandRejected")[-1].command_type == "DeleteSnapshotRequested"
    assert app.handle("early", ExpireSnapshot(
        cluster_name=CLUSTER, snapshot_name="manual-keep-1")) == Outcome.REJECTED, "not expired yet"

    parts.set_time(datetime(2026, 3, 4, 0, 6, tzinfo=timezone.utc))  # 2 days after the first
    app.handle("p3", RemoveSnapshotPolicy(cluster_name=CLUSTER))  # retention goes on without it
    await parts.tick()
    await parts.tick()
    deleted = {e.snapshot_name: e.reason for e in parts.events("SnapshotDeleted")}
    assert deleted == {"auto-dws-life-1-202603020000": "expired", "manual-keep-1": "expired"}
    assert not parts.workflow.snapshot_directory(CLUSTER, "manual-keep-1").exists()
    assert parts.workflow.snapshot_directory(CLUSTER, "manual-forever").exists()
    parts.set_time(datetime(2026, 3, 8, 0, 5, tzinfo=timezone.utc))
    await parts.tick()
    await parts.tick()
    deleted = [e.snapshot_name for e in parts.events("SnapshotDeleted")]
    assert sorted(deleted) == ["auto-dws-life-1-202603020000", "auto-dws-life-1-202603030000", "manual-keep-1"]
    assert app.handle("hand2", DeleteSnapshotRequested(cluster_name=CLUSTER,
                                                       snapshot_name="manual-forever")) == Outcome.ACCEPTED
    assert parts.events("SnapshotDeleted")[-1].reason == "requested"


async def test_files_a_crash_left_behind_a_deleted_snapshot_are_removed_by_the_next_pass(parts):
    app = parts.app
    app.handle("c", CreateSnapshotRequested(cluster_name=CLUSTER, snapshot_name="manual-2", retention_days=1))
    parts.workflow.start(CLUSTER)
    await parts.workflow.wait_idle()
    parts.set_time(T0 + timedelta(days=1, minutes=1))
    # The delete is recorded but its files job never ran (the worker died just after).
    assert app.handle(expiry_command_id("manual-2", app.get_snapshot("manual-2").version), ExpireSnapshot(cluster_name=CLUSTER,
                                                                    snapshot_name="manual-2")) == Outcome.ACCEPTED
    assert parts.workflow.snapshot_directory(CLUSTER, "manual-2").exists()
    assert await parts.tick() == 0
    assert not parts.workflow.snapshot_directory(CLUSTER, "manual-2").exists()


@pytest.mark.postgres
def test_two_instances_issuing_one_slot_at_the_same_moment_take_it_once(tmp_path, postgres_database):
    """Two applications on one PostgreSQL store (as two service instances during a
    rebalance) handle the same slot's command in parallel threads."""
    import threading

    from tests.conftest import postgres_dsn

    clock = tmp_path / "clock"
    set_test_clock(clock, T0.replace(hour=10, minute=0, second=3))
    settings = Settings(data_dir=tmp_path, event_store="postgres", postgres_dsn=postgres_dsn(postgres_database),
                        test_clock_file=clock, allowed_targets="*")
    first, second = bootstrap.make_application(settings), bootstrap.make_application(settings)
    first.handle("reg", RegisterCluster(cluster_name=CLUSTER, driver="sqlite", target=str(tmp_path / "w.sqlite")))
    first.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 hour)", keep_days=1))
    set_test_clock(clock, T0.replace(hour=11, minute=0, second=3))
    slot = T0.replace(hour=11, minute=0)
    for round_ in range(5):
        slot = slot + timedelta(hours=1)
        barrier, outcomes = threading.Barrier(2), []

        def fire(app):
            barrier.wait()
            outcomes.append(app.handle(slot_command_id(CLUSTER, slot), TakeScheduledSnapshot(
                cluster_name=CLUSTER, slot=slot)))
        threads = [threading.Thread(target=fire, args=(app,)) for app in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [Outcome.ACCEPTED, Outcome.DUPLICATE]
        # Unlock for the next round, as the workflow would.
        first.fail_snapshot(CLUSTER, f"auto-{CLUSTER}-{slot:%Y%m%d%H%M}", "not run in this test")
    started = [type(first.mapper.to_domain_event(n)).__name__ for n in first.recorder.select_notifications(1, 1000)]
    assert started.count("SnapshotStarted") == 5 and "ScheduledSnapshotSkipped" not in started


async def test_the_scheduler_job_outlives_an_event_store_outage_across_a_slot_and_fires_it_once(
        tmp_path, private_postgres, monkeypatch, caplog):
    """The periodic job on a private PostgreSQL event store that stops (immediate, as a
    crash) just before a slot and comes back after it: the passes in between fail and are
    logged, the job keeps running, and the slot is taken once when the store is back."""
    import asyncio

    from services.snapshots.jobs import Jobs

    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")
    clock = tmp_path / "clock"
    set_test_clock(clock, T0)
    settings = Settings(data_dir=tmp_path / "data", event_store="postgres", allowed_targets="*",
                        postgres_dsn=private_postgres.create_database("snapshots"), test_clock_file=clock)
    app = bootstrap.make_application(settings)
    workflow = bootstrap.make_workflow(app, bootstrap.make_drivers(settings), settings.snapshot_repository, 30)
    scheduler = Scheduler(app, workflow, workflow._store)
    warehouse = tmp_path / "warehouse.sqlite"
    create_demo_warehouse(warehouse, 20, 100)
    app.handle("reg", RegisterCluster(cluster_name=CLUSTER, driver="sqlite", target=str(warehouse)))
    app.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 hour)", keep_days=1))
    jobs = Jobs()
    jobs.every("schedule", 0.2, lambda: scheduler.tick(owns_all))
    try:
        private_postgres.stop("immediate")
        set_test_clock(clock, T0.replace(hour=10, minute=0, second=4))
        await asyncio.sleep(14)  # a store call gives up after 10 tries of 1 s
        private_postgres.start()
        name = "auto-dws-life-1-202603011000"
        for _ in range(300):
            snapshot = await asyncio.to_thread(app.find, snapshot_id(name))
            if snapshot is not None and snapshot.status == "Available":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{name} was not taken after the store came back")
        await asyncio.sleep(1)  # more passes: nothing more may happen
    finally:
        await jobs.stop()
        await workflow.wait_idle()
    types = [type(app.mapper.to_domain_event(n)).__name__ for n in app.recorder.select_notifications(1, 1000)]
    assert types.count("SnapshotStarted") == 1 and "ScheduledSnapshotSkipped" not in types
    assert "periodic job schedule failed" in caplog.text
    app.close()


async def test_a_cancelled_automated_snapshot_expires_like_a_failed_one(parts):
    """It cannot be deleted by hand (`snapshot_automated`): retention must take it."""
    app, slot = parts.app, datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
    app.handle("p", SetSnapshotPolicy(cluster_name=CLUSTER, schedule="rate(1 day)", keep_days=1))
    parts.set_time(slot + timedelta(minutes=5))
    assert app.handle(slot_command_id(CLUSTER, slot), TakeScheduledSnapshot(cluster_name=CLUSTER, slot=slot)) == Outcome.ACCEPTED
    name = "auto-dws-life-1-202603020000"
    assert app.handle("x", CancelSnapshotRequested(cluster_name=CLUSTER, snapshot_name=name)) == Outcome.ACCEPTED
    parts.workflow.start(CLUSTER)  # the workflow finds the cancel and finishes it
    await parts.workflow.wait_idle()
    assert app.get_snapshot(name).status == "Cancelled"
    parts.set_time(slot + timedelta(days=1, minutes=5))
    await parts.tick()
    await parts.tick()
    assert {e.snapshot_name: e.reason for e in parts.events("SnapshotDeleted")} == {name: "expired"}
