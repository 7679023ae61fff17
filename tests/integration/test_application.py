"""The application's behaviour, the same scenarios on every event store it supports:
in memory (POPO), a SQLite file, and the local PostgreSQL server."""

import pytest
from eventsourcing.persistence import StoredEvent

from events.commands import (CancelSnapshotRequested, CreateSnapshotRequested, DeleteSnapshotRequested, RegisterCluster,
                             ReportClusterStatus, RestartClusterRequested, RestoreSnapshotRequested)
from services.snapshots import bootstrap
from services.snapshots.application import command_sha256, payload_sha256
from services.snapshots.domain import CommandRecord, snapshot_id
from services.snapshots.settings import Settings
from tests.conftest import postgres_dsn


def stored_types(app) -> list[str]:
    return [type(app.mapper.to_domain_event(n)).__name__
            for n in app.recorder.select_notifications(1, 1000)]


def rejections(app) -> list[str]:
    return [app.mapper.to_domain_event(n).code for n in app.recorder.select_notifications(1, 1000)
            if n.topic.endswith("CommandRejected")]


def rejected(app) -> list:
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 1000)
            if n.topic.endswith("CommandRejected")]


def store_bytes(data_dir) -> bytes:
    """Everything the SQLite event store holds on disk: its file and its write-ahead log
    (recent writes are in the log until a checkpoint)."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("events.sqlite*")))


def store_record_without_hash(app, command_id: str) -> None:
    """A command record as stored before payloads were hashed: no `payload_sha256` at all."""
    record = CommandRecord(command_id=command_id, command_type="CreateSnapshotRequested",
                           cluster_name="dws-prod-1")
    transcoder, old = app.mapper.transcoder, []
    for stored in map(app.mapper.to_stored_event, record.collect_events()):
        state = transcoder.decode(stored.state)
        del state["payload_sha256"]
        old.append(StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                               transcoder.encode(state)))
    app.recorder.insert_events(old)


def test_the_payload_hash_is_of_the_type_and_the_canonical_json_of_the_data():
    assert payload_sha256("T", {"b": 1, "a": "é"}) == payload_sha256("T", {"a": "é", "b": 1})
    assert payload_sha256("T", {"a": 1}) != payload_sha256("U", {"a": 1})
    command = CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")
    sent = {"cluster_name": "dws-prod-1", "snapshot_name": "nightly-01"}
    assert command_sha256(command) == payload_sha256("CreateSnapshotRequested", sent)


class ApplicationScenarios:
    @pytest.fixture
    def settings(self, tmp_path) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    def app(self, settings):
        application = bootstrap.make_application(settings)
        application.handle("reg-1", RegisterCluster(cluster_name="dws-prod-1", driver="sqlite",
                                                    target="/data/prod.sqlite"))
        yield application
        application.close()

    def test_a_snapshot_request_locks_the_cluster_and_starts_the_snapshot(self, app):
        outcome = app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        assert outcome == "accepted"
        assert stored_types(app)[-2:] == ["ClusterLocked", "SnapshotStarted"]
        assert app.get_snapshot("NIGHTLY-01").status == "Creating"

    def test_the_same_command_id_twice_has_one_effect(self, app):
        command = CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")
        assert app.handle("c1", command) == "accepted"
        assert app.handle("c1", command) == "duplicate"
        assert stored_types(app).count("SnapshotStarted") == 1
        assert rejections(app) == []

    def test_a_command_id_reused_with_another_payload_is_refused_once_and_the_first_outcome_stands(self, app):
        assert app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "accepted"
        other = CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-02")
        assert app.handle("c1", other) == "rejected"
        assert app.handle("c1", other) == "duplicate"  # a third delivery adds nothing
        [reuse] = rejected(app)
        assert (reuse.command_id, reuse.code, reuse.command_type) == ("c1", "command_id_reused", "CreateSnapshotRequested")
        assert "already used" in reuse.reason
        assert app.get_snapshot("nightly-01").status == "Creating"
        assert app.find(snapshot_id("nightly-02")) is None
        assert stored_types(app).count("SnapshotStarted") == 1

    def test_each_other_payload_under_a_used_id_gets_its_own_single_rejection(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-nope-9", snapshot_name="nightly-01"))
        for name in ("nightly-02", "nightly-03", "nightly-02", "nightly-03"):
            app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name=name))
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-nope-9", snapshot_name="nightly-01"))
        assert rejections(app) == ["unknown_cluster", "command_id_reused", "command_id_reused"]
        assert "SnapshotStarted" not in stored_types(app)

    def test_an_invalid_command_reused_with_another_payload_is_refused_once(self, app):
        first, second = payload_sha256("Bogus", {"a": 1}), payload_sha256("Bogus", {"a": 2})
        for digest in (first, second, second, first):
            app.reject_invalid("x1", "Bogus", "dws-prod-1", "unknown_command_type", "unknown", digest)
        assert rejections(app) == ["unknown_command_type", "command_id_reused"]

    def test_a_record_stored_before_payloads_were_hashed_matches_any_payload(self, app):
        store_record_without_hash(app, "old-1")
        before = stored_types(app)
        assert app.handle("old-1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-09")) == "duplicate"
        assert stored_types(app) == before

    def test_a_duplicate_name_in_other_case_is_rejected_once(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="Nightly-01"))
        app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        assert app.handle("c2", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "rejected"
        assert rejections(app) == ["duplicate_snapshot_name"]

    def test_completion_makes_the_snapshot_available_and_unlocks_to_the_prior_status(self, app):
        app.handle("s1", ReportClusterStatus(cluster_name="dws-prod-1", status="Low performance"))
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.make_read_only("dws-prod-1", "nightly-01")
        app.complete_snapshot("dws-prod-1", "nightly-01", 4096, None)
        cluster = app.get_cluster("dws-prod-1")
        assert (cluster.status, cluster.task_status) == ("Low performance", None)
        assert (app.get_snapshot("nightly-01").status, app.get_snapshot("nightly-01").size_bytes) == ("Available", 4096)

    def test_a_failed_snapshot_keeps_its_reason_and_still_unlocks(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.fail_snapshot("dws-prod-1", "nightly-01", "disk full")
        assert app.get_snapshot("nightly-01").failure_reason == "disk full"
        assert stored_types(app)[-2:] == ["SnapshotFailed", "ClusterUnlocked"]
        assert app.get_cluster("dws-prod-1").status == "Available"

    def test_restart_is_rejected_while_a_snapshot_is_created_and_allowed_after(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        assert app.handle("r1", RestartClusterRequested(cluster_name="dws-prod-1")) == "rejected"
        app.complete_snapshot("dws-prod-1", "nightly-01", 1, None)
        assert app.handle("r2", RestartClusterRequested(cluster_name="dws-prod-1")) == "accepted"
        assert rejections(app) == ["snapshot_in_progress"]

    @pytest.mark.parametrize("command, code", [
        (CreateSnapshotRequested(cluster_name="dws-nope-9", snapshot_name="nightly-01"), "unknown_cluster"),
        (CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="1bad"), "invalid_snapshot_name"),
        (CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="good-1", description="a=b"), "invalid_description"),
        (RegisterCluster(cluster_name="DWS-PROD-1", driver="sqlite", target="/x"), "duplicate_cluster_name"),
        (RegisterCluster(cluster_name="dws-prod-2", driver="postgres", target="postgresql://u:pw@h/db"), "secret_in_command"),
    ])
    def test_each_refused_command_leaves_exactly_one_rejection_with_its_code(self, app, command, code):
        assert app.handle("bad-1", command) == "rejected"
        assert rejections(app) == [code]

    def test_an_unavailable_cluster_is_not_ready_for_a_snapshot(self, app):
        app.handle("s1", ReportClusterStatus(cluster_name="dws-prod-1", status="Unavailable"))
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        assert rejections(app) == ["cluster_not_ready"]

    def test_a_restore_marks_the_snapshot_restoring_then_registers_the_new_cluster(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        restore = RestoreSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01",
                                           target_cluster_name="dws-copy-1")
        assert app.handle("r1", restore) == "accepted"
        assert app.get_snapshot("nightly-01").status == "Restoring"
        assert [s.snapshot_name for s in app.snapshots_restoring()] == ["nightly-01"]
        app.complete_restore("nightly-01", "sqlite", "/data/copy.sqlite")
        assert app.get_snapshot("nightly-01").status == "Available"
        assert app.get_cluster("dws-copy-1").target == "/data/copy.sqlite"
        assert stored_types(app)[-2:] == ["RestoreCompleted", "ClusterRegistered"]

    def test_a_failed_restore_returns_the_snapshot_to_available(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        app.handle("r1", RestoreSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01",
                                                  target_cluster_name="dws-copy-1"))
        app.fail_restore("nightly-01", "disk full")
        assert app.get_snapshot("nightly-01").status == "Available"
        assert stored_types(app)[-1] == "RestoreFailed"

    @pytest.mark.parametrize("make, code", [
        (lambda: None, "snapshot_not_available"),
        (lambda: "nightly-02", "unknown_snapshot"),
    ])
    def test_only_an_existing_available_snapshot_can_be_restored(self, app, make, code):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        name = make() or "nightly-01"
        app.handle("r1", RestoreSnapshotRequested(cluster_name="dws-prod-1", snapshot_name=name,
                                                  target_cluster_name="dws-copy-1"))
        assert rejections(app) == [code]

    def test_a_restore_into_an_existing_cluster_name_is_rejected(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        app.handle("r1", RestoreSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01",
                                                  target_cluster_name="DWS-PROD-1"))
        assert rejections(app) == ["duplicate_cluster_name"]

    def test_deleting_an_available_or_failed_snapshot_succeeds_and_it_is_gone(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.fail_snapshot("dws-prod-1", "nightly-01", "disk full")
        assert app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "accepted"
        assert app.handle("d2", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "rejected"
        assert rejections(app) == ["unknown_snapshot"]

    def test_deleting_a_snapshot_being_created_or_restored_is_rejected_busy(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        app.handle("r1", RestoreSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01",
                                                  target_cluster_name="dws-copy-1"))
        app.handle("d2", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        assert rejections(app) == ["snapshot_busy", "snapshot_busy"]

    def test_a_snapshot_of_another_cluster_is_unknown_to_this_one(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-prod-9", snapshot_name="nightly-01"))
        assert rejections(app) == ["unknown_snapshot"]

    def test_a_cancel_is_recorded_then_cancelled_correlated_to_the_cancel_and_unlocked_for_the_create(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        cancel = CancelSnapshotRequested(cluster_name="DWS-PROD-1", snapshot_name="Nightly-01")
        assert app.handle("x1", cancel) == "accepted"
        assert app.cancel_requested("nightly-01") and app.get_snapshot("nightly-01").status == "Creating"
        assert app.handle("x2", cancel) == "rejected"  # already being cancelled
        assert app.cancel_snapshot("dws-prod-1", "nightly-01", "cancelled on request")
        assert not app.cancel_snapshot("dws-prod-1", "nightly-01", "again")  # fenced: once
        events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 1000)]
        cancelled, unlocked = events[-2:]
        assert (type(cancelled).__name__, cancelled.command_id) == ("SnapshotCancelled", "x1")
        assert (type(unlocked).__name__, unlocked.command_id) == ("ClusterUnlocked", "c1")
        assert app.get_snapshot("nightly-01").status == "Cancelled"
        assert app.get_cluster("dws-prod-1").status == "Available"
        assert app.handle("x3", cancel) == "rejected"
        assert rejections(app) == ["snapshot_not_creating", "snapshot_not_creating"]
        assert app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "accepted"

    @pytest.mark.parametrize("status", ["Available", "Failed"])
    def test_cancelling_a_snapshot_that_is_not_creating_is_rejected(self, app, status):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        if status == "Available":
            app.complete_snapshot("dws-prod-1", "nightly-01", 10, None)
        else:
            app.fail_snapshot("dws-prod-1", "nightly-01", "disk full")
        assert app.handle("x1", CancelSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "rejected"
        assert app.handle("x2", CancelSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nope-01")) == "rejected"
        assert rejections(app) == ["snapshot_not_creating", "unknown_snapshot"]
        assert not app.cancel_requested("nightly-01")

    def test_interrupted_workflows_are_found_from_the_store(self, app):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        assert [c.cluster_name for c in app.clusters_creating_snapshots()] == ["dws-prod-1"]


class TestOnPOPO(ApplicationScenarios):
    @pytest.fixture
    def settings(self, tmp_path):
        return Settings(event_store="popo", data_dir=tmp_path, allowed_targets="*")


class TestOnSQLite(ApplicationScenarios):
    @pytest.fixture
    def settings(self, tmp_path):
        return Settings(event_store="sqlite", data_dir=tmp_path, allowed_targets="*")

    def test_state_survives_reopening_the_file(self, app, settings):
        app.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
        reopened = bootstrap.make_application(settings)
        assert reopened.get_cluster("dws-prod-1").task_status == "Creating snapshot"


class TestOnPostgreSQL(ApplicationScenarios):
    @pytest.fixture
    def settings(self, tmp_path, postgres_database):
        return Settings(event_store="postgres", postgres_dsn=postgres_dsn(postgres_database),
                        data_dir=tmp_path, allowed_targets="*")


@pytest.mark.parametrize("driver, target", [
    ("sqlite", "/etc/dws/warehouse.sqlite"),
    ("postgres", "postgresql://dws@db.example.com:5432/warehouse"),
    ("postgres", "host=127.0.0.1,db.example.com dbname=warehouse"),
    ("postgres", "postgresql:///warehouse?service=prod"),
])
def test_a_cluster_outside_the_allowed_targets_is_rejected_before_anything_is_stored(tmp_path, driver, target):
    app = bootstrap.make_application(Settings(event_store="sqlite", data_dir=tmp_path))
    command = RegisterCluster(cluster_name="dws-far-1", driver=driver, target=target)
    assert app.handle("reg-far", command) == "rejected"
    assert rejections(app) == ["target_not_allowed"]
    assert "ClusterRegistered" not in stored_types(app)


def test_a_password_in_any_form_is_rejected_and_never_stored(tmp_path):
    app = bootstrap.make_application(Settings(event_store="sqlite", data_dir=tmp_path))
    for i, target in enumerate(["postgresql://u:s3cret@[localhost]/db", "host=localhost password=s3cret",
                                "postgresql://localhost/db?password=s3cret", "host=localhost sslpassword=s3cret"]):
        assert app.handle(f"reg-{i}", RegisterCluster(cluster_name=f"dws-pw-{i}", driver="postgres",
                                                      target=target)) == "rejected"
    assert set(rejections(app)) == {"secret_in_command"}
    assert b"s3cret" not in store_bytes(tmp_path)
