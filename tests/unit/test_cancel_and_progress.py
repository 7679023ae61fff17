"""Cancel and progress in the workflow, with fake drivers (the real drivers and processes
are in tests/integration and tests/e2e/test_progress_and_cancel.py): a cancel stops the
copy, releases, removes the files and records the outcome once; a cancel recorded before
a crash is finished by the next run without copying; a cancel accepted after the copy
finished still wins; progress figures are throttled and published with the create
command's correlation and context."""

import asyncio
import json

from events.commands import CancelSnapshotRequested, CreateSnapshotRequested, RegisterCluster
from events.envelope import Envelope
from services.snapshots.domain import CommandContext
from services.snapshots.progress import ProgressMeter, ProgressPublisher
from tests.unit.test_workflow_timeouts import FakeDriver, FakeFrozen, locked_cluster, workflow

CANCEL = CancelSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01")


def stored(app) -> list:
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 1000)]


def outcome_of(app) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.command_id) for e in stored(app)
            if type(e).__name__ in ("SnapshotCancelled", "SnapshotCompleted", "SnapshotFailed", "ClusterUnlocked")]


async def test_a_cancel_stops_the_copy_releases_removes_the_files_and_records_once(tmp_path):
    app = locked_cluster()
    driver = FakeDriver(copy_waits=True)
    running = workflow(app, driver, tmp_path)
    running.start("dws-one")
    await asyncio.to_thread(driver.copy_started.wait, 5)
    (tmp_path / "dws-one" / "nightly-01" / "partial").mkdir(parents=True)  # what a copy left
    assert app.handle("x1", CANCEL) == "accepted"
    running.on_accepted(CANCEL)
    await asyncio.wait_for(running.wait_idle(), 10)
    assert outcome_of(app) == [("SnapshotCancelled", "x1"), ("ClusterUnlocked", "c-nightly-01")]
    assert app.get_snapshot("nightly-01").status == "Cancelled"
    assert app.get_cluster("dws-one").status == "Available" and not driver.frozen
    assert not (tmp_path / "dws-one" / "nightly-01").exists()


async def test_a_cancel_recorded_before_a_crash_is_finished_without_copying(tmp_path):
    app = locked_cluster()
    app.handle("x1", CANCEL)  # then the worker died: the cluster is still frozen
    driver = FakeDriver(frozen=True)
    (tmp_path / "dws-one" / "nightly-01" / "attempt-1").mkdir(parents=True)
    await workflow(app, driver, tmp_path).run("dws-one")
    await workflow(app, driver, tmp_path).run("dws-one")  # a second resumption adds nothing
    assert not driver.copy_started.is_set() and not driver.frozen
    assert outcome_of(app) == [("SnapshotCancelled", "x1"), ("ClusterUnlocked", "c-nightly-01")]
    assert not (tmp_path / "dws-one" / "nightly-01").exists()


async def test_a_cancel_accepted_once_the_copy_finished_but_before_its_outcome_still_cancels(tmp_path):
    app = locked_cluster()

    class CancelledDuringCopy(FakeFrozen):
        def copy_to(self, directory, cancel=None, progress=None):
            app.handle("x1", CANCEL)  # accepted while copying; this worker never heard of it
            return super().copy_to(directory, cancel, progress)

    driver = FakeDriver()
    driver.freeze = lambda target: CancelledDuringCopy(driver)
    await workflow(app, driver, tmp_path).run("dws-one")
    assert outcome_of(app) == [("SnapshotCancelled", "x1"), ("ClusterUnlocked", "c-nightly-01")]


def test_the_meter_reports_at_most_once_an_interval_and_always_the_end():
    now = [100.0]
    meter = ProgressMeter(1.0, clock=lambda: now[0])
    reports = []
    for done in range(0, 1000, 100):
        now[0] += 0.25
        reports.append(meter.measure(done, 1000))
    shown = [r for r in reports if r is not None]
    assert [r["bytes_done"] for r in shown] == [0, 400, 800]
    assert shown[1]["percent"] == 40.0 and shown[1]["bytes_per_second"] == 320.0
    assert shown[1]["eta_seconds"] == round(600 / 320, 1)
    now[0] += 0.1
    final = meter.measure(1000, 1000)  # the last call of a copy: never held back
    assert (final["percent"], final["eta_seconds"], final["bytes_total"]) == (100.0, 0.0, 1000)


def test_an_estimate_passed_before_the_end_is_never_shown_as_done():
    meter = ProgressMeter(0.0, clock=iter([0.0, 1.0, 2.0]).__next__)
    beyond = meter.measure(1500, 1000)
    assert beyond["percent"] == 99.9 and beyond["bytes_total"] == 1500
    unknown = meter.measure(10, None)
    assert (unknown["percent"], unknown["eta_seconds"], unknown["bytes_total"]) == (None, None, None)


class FakeProducer:
    """Stands for relay.SharedProducer (unit test: no broker)."""

    def __init__(self):
        self.sent = []

    async def get(self):
        return self

    async def send(self, topic, value, key=None, headers=None):
        self.sent.append((topic, key, Envelope.model_validate(json.loads(value))))


async def test_progress_goes_to_the_events_topic_keyed_and_correlated_to_the_create_command(tmp_path):
    app = locked_cluster()

    class Reporting(FakeFrozen):
        def copy_to(self, directory, cancel=None, progress=None):
            for done in (0, 50, 100):
                progress(done, 100)
            return super().copy_to(directory, cancel, progress)

    app.handle("r2", RegisterCluster(cluster_name="dws-two", driver="sqlite", target="/y"))
    app.handle("c3", CreateSnapshotRequested(cluster_name="dws-two", snapshot_name="two-01"),
               context=CommandContext(authtype="app_user", authid="alice", traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"))
    driver = FakeDriver()
    driver.freeze = lambda target: Reporting(driver)
    producer = FakeProducer()
    running = workflow(app, driver, tmp_path)
    running.progress = ProgressPublisher(producer, "snapshot.events", "test", interval_seconds=60)
    await running.run("dws-Two")
    await asyncio.sleep(0.05)  # the sends scheduled from the copy thread
    assert [(t, k) for t, k, _ in producer.sent] == [("snapshot.events", b"dws-two")] * 2
    first, last = (e for _, _, e in producer.sent)
    assert (first.type, first.correlationid, first.authid, first.traceparent[:5]) == (
        "SnapshotProgress", "c3", "alice", "00-11")
    assert (first.data["bytes_done"], last.data["bytes_done"], last.data["percent"]) == (0, 100, 100.0)
    assert first.sequence is None  # telemetry: not from the store
    assert "SnapshotProgress" not in {type(e).__name__ for e in stored(app)}


async def test_a_broker_that_is_away_loses_progress_but_never_the_snapshot(tmp_path):
    from services.snapshots.broker import free_port
    from services.snapshots.relay import SharedProducer

    app = locked_cluster()

    class Reporting(FakeFrozen):
        def copy_to(self, directory, cancel=None, progress=None):
            for done in (0, 50, 100):
                progress(done, 100)
            return super().copy_to(directory, cancel, progress)

    driver = FakeDriver()
    driver.freeze = lambda target: Reporting(driver)
    running = workflow(app, driver, tmp_path)
    nobody = SharedProducer(f"127.0.0.1:{free_port()}")  # nothing listens there
    running.progress = ProgressPublisher(nobody, "snapshot.events", "test", interval_seconds=0.0)
    await asyncio.wait_for(running.run("dws-one"), 10)
    assert outcome_of(app) == [("SnapshotCompleted", "c-nightly-01"), ("ClusterUnlocked", "c-nightly-01")]
    for task in list(running.progress._sending):  # the sends still trying: given up here
        task.cancel()
