"""The rules of copying a snapshot to another repository, on a real SQLite event store:
only to a listed target, never to its own repository, only Available snapshots, one copy
per target at a time, no delete while a copy runs; the copies kept in the aggregate."""

import pytest

from events.commands import CopySnapshotRequested, CreateSnapshotRequested, DeleteSnapshotRequested, RegisterCluster
from services.snapshots import bootstrap
from services.snapshots.settings import Settings
from tests.integration.test_application import rejected, store_bytes

PRIMARY, DR = "s3://primary/prod", "s3://dr-bucket/dr"


@pytest.fixture
def app(tmp_path):
    settings = Settings(event_store="sqlite", data_dir=tmp_path, allowed_targets="*",
                        copy_targets=f"{DR}/, {PRIMARY}")
    application = bootstrap.make_application(settings)
    application.handle("reg", RegisterCluster(cluster_name="dws-prod-1", driver="sqlite", target="/data/p.sqlite"))
    application.handle("c1", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01"))
    yield application
    application.close()


def copy(app, command_id: str, target: str, snapshot: str = "nightly-01") -> str:
    return app.handle(command_id, CopySnapshotRequested(cluster_name="dws-prod-1", snapshot_name=snapshot,
                                                        target_repository=target))


def codes(app) -> list[str]:
    return [r.code for r in rejected(app)]


def test_copies_go_only_to_listed_targets_other_than_the_snapshots_own_repository(app):
    assert copy(app, "early", DR) == "rejected"  # still Creating
    app.complete_snapshot("dws-prod-1", "nightly-01", 10, None, "ab" * 32, "a1", PRIMARY)
    assert app.get_snapshot("nightly-01").repository == PRIMARY
    for command_id, target in (("x1", "s3://elsewhere/dr"), ("x2", PRIMARY + "/"), ("x3", "https://dr/x"),
                               ("x4", "local")):
        assert copy(app, command_id, target) == "rejected"
    assert codes(app) == ["snapshot_not_available"] + ["target_not_allowed"] * 4
    assert "SNAPSHOT_COPY_TARGETS" in rejected(app)[1].reason

    assert copy(app, "k1", DR + "/") == "accepted"
    assert app.get_snapshot("nightly-01").copying == [DR]
    assert copy(app, "k2", DR) == "rejected"  # one copy to a target at a time
    assert app.handle("d1", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "rejected"
    assert codes(app)[-2:] == ["snapshot_busy", "snapshot_busy"]

    app.complete_copy("nightly-01", DR, 10)
    snapshot = app.get_snapshot("nightly-01")
    assert snapshot.copying == [] and snapshot.copies == {DR: ""}
    # Copied already: a second copy that failed would remove the good one's files.
    assert copy(app, "k3", DR) == "rejected"
    assert codes(app)[-1] == "target_not_allowed" and "already" in rejected(app)[-1].reason
    assert app.handle("d2", DeleteSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-01")) == "accepted"


def test_a_failed_copy_can_be_tried_again(app):
    app.complete_snapshot("dws-prod-1", "nightly-01", 10, None, "ab" * 32, "a1", "local")
    assert copy(app, "k1", DR) == "accepted"
    app.fail_copy("nightly-01", DR, "S3: connection refused")
    assert app.get_snapshot("nightly-01").copies == {}
    assert copy(app, "k2", DR) == "accepted"
    assert [s.snapshot_name for s in app.snapshots_copying()] == ["nightly-01"]


def test_a_snapshot_being_copied_expires_once_the_copy_has_ended(app):
    from datetime import timedelta

    app.fail_snapshot("dws-prod-1", "nightly-01", "not this one")
    assert app.handle("c2", CreateSnapshotRequested(cluster_name="dws-prod-1", snapshot_name="nightly-02",
                                                    retention_days=1)) == "accepted"
    app.complete_snapshot("dws-prod-1", "nightly-02", 10, None, "ab" * 32, "a1", "local")
    later = app.get_snapshot("nightly-02").started_at + timedelta(days=2)
    assert copy(app, "k1", DR, "nightly-02") == "accepted"
    assert not app.get_snapshot("nightly-02").is_expired(later)
    app.complete_copy("nightly-02", DR, 10)
    assert app.get_snapshot("nightly-02").is_expired(later)


def test_a_stale_copys_outcome_is_not_recorded(app):
    """A worker that kept copying after another recorded the outcome (or after a new copy
    began) records nothing: its failure must not remove a copy that succeeded."""
    app.complete_snapshot("dws-prod-1", "nightly-01", 10, None, "ab" * 32, "a1", "local")
    assert copy(app, "k1", DR) == "accepted"
    first = app.get_snapshot("nightly-01").copies[DR]
    assert app.fail_copy("nightly-01", DR, "S3: timeout", first)
    assert copy(app, "k2", DR) == "accepted"
    assert not app.fail_copy("nightly-01", DR, "S3: timeout", first)  # the first copy's worker, late
    assert not app.complete_copy("nightly-01", DR, 10, first)
    assert app.get_snapshot("nightly-01").copying == [DR]
    assert app.complete_copy("nightly-01", DR, 10, app.get_snapshot("nightly-01").copies[DR])
    assert not app.fail_copy("nightly-01", DR, "S3: timeout")
    assert app.get_snapshot("nightly-01").copies == {DR: ""}


def test_credentials_in_a_copy_target_are_refused_and_never_stored(app, tmp_path):
    app.complete_snapshot("dws-prod-1", "nightly-01", 10, None, "ab" * 32, "a1", "local")
    assert copy(app, "s1", "s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@dr-bucket/dr") == "rejected"
    assert copy(app, "s2", "s3://dr-bucket/dr?aws_secret_access_key=wJalrXUtnFEMIK7MDENG") == "rejected"
    assert codes(app) == ["secret_in_command", "target_not_allowed"]
    assert b"wJalrXUtnFEMIK7MDENG" not in store_bytes(tmp_path)
