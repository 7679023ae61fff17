"""`SnapshotProgress` in the views: the projection keeps the latest of a Creating snapshot
as its `progress` (telemetry from the topic, not the store: nothing is set aside, nothing
enters the history), ignores one that arrives after the outcome or names another cluster,
and the outcome clears it. Real SQLite and PostgreSQL stores and views."""

from events.commands import CreateSnapshotRequested, RegisterCluster
from events.envelope import Envelope
from services.snapshots import bootstrap, views
from services.snapshots.set_aside import SetAsideLog
from tests.integration.test_relay_and_projection import settings  # noqa: F401


def progress(done: int, total: int, cluster: str = "dws-one") -> Envelope:
    return Envelope(type="SnapshotProgress", source="test", subject=cluster, correlationid="c1", data={
        "cluster_name": cluster, "snapshot_name": "nightly-01", "bytes_done": done, "bytes_total": total,
        "percent": round(100 * done / total, 1), "bytes_per_second": 10.0, "eta_seconds": 1.0})


def test_the_latest_progress_of_a_creating_snapshot_is_shown_until_its_outcome(settings):  # noqa: F811
    app = bootstrap.make_application(settings)
    app.handle("r1", RegisterCluster(cluster_name="dws-one", driver="sqlite", target=str(settings.data_dir / "one.sqlite")))
    app.handle("c1", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01"))
    follow, engine = bootstrap.build_projection(settings).follow, bootstrap.make_view_engine(settings)

    follow([progress(10, 100), progress(30, 100)])
    shown = views.get_snapshot(engine, "NIGHTLY-01")
    assert shown["status"] == "Creating"
    assert shown["progress"] == {"bytes_done": 30, "bytes_total": 100, "percent": 30.0,
                                 "bytes_per_second": 10.0, "eta_seconds": 1.0}
    follow([progress(90, 100, cluster="dws-other")])  # forged: not this snapshot's cluster
    assert views.get_snapshot(engine, "nightly-01")["progress"]["bytes_done"] == 30

    app.complete_snapshot("dws-one", "nightly-01", 100, None)
    follow([progress(100, 100)])  # arrives as the outcome is applied: too late to show
    done = views.get_snapshot(engine, "nightly-01")
    assert (done["status"], done["progress"]) == ("Available", None)
    assert SetAsideLog(engine).latest() == []
    assert "SnapshotProgress" not in {e["type"] for e in views.snapshot_history(engine, "nightly-01")}
