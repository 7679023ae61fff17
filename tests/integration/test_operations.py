"""What the API derives from the store and the views for `/metrics` and `/health`: the real
API app (in this process) over real stores (SQLite and PostgreSQL) and the real broker, with
the relay and the projection run by hand so that every lag is known."""

from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from events.commands import CreateSnapshotRequested
from services.snapshots import bootstrap
from services.snapshots.settings import Settings
from services.snapshots.views import snapshot_history
from tests.integration.test_relay_and_projection import relay_everything, settings, take_snapshot  # noqa: F401


def scrape(api: TestClient) -> dict:
    """{(sample name, sorted labels): value} of one scrape of /metrics, without a token."""
    answer = api.get("/metrics")
    assert answer.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def event_time(settings: Settings, snapshot: str, event_type: str) -> float:  # noqa: F811
    """The time the views' history shows for a snapshot's event, as a Unix time."""
    [event] = [e for e in snapshot_history(bootstrap.make_view_engine(settings), snapshot)
               if e["type"] == event_type]
    return datetime.fromisoformat(event["time"]).timestamp()


async def test_the_relay_and_projection_lags_are_what_the_store_holds_beyond_their_positions(settings):  # noqa: F811
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    stored = app.recorder.max_notification_id()
    api = TestClient(bootstrap.build_api(settings))
    assert scrape(api)[("dws_snapshots_relay_lag_events", ())] == stored
    assert scrape(api)[("dws_snapshots_projection_lag_events", ())] == stored

    await relay_everything(app, settings)
    assert scrape(api)[("dws_snapshots_relay_lag_events", ())] == 0
    bootstrap.build_projection(settings).follow()
    assert scrape(api)[("dws_snapshots_projection_lag_events", ())] == 0


async def test_a_locked_cluster_shows_since_when_and_a_completed_snapshot_its_time(settings):  # noqa: F811
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    app.handle("cmd-2", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-02"))
    bootstrap.build_projection(settings).follow()  # the second one is locked, not yet run
    metrics = scrape(TestClient(bootstrap.build_api(settings)))

    cluster = (("cluster", "dws-one"),)
    assert metrics[("dws_snapshots_frozen_since_timestamp_seconds", cluster)] == pytest.approx(
        event_time(settings, "nightly-02", "ClusterLocked"), abs=1e-3)
    assert metrics[("dws_snapshots_last_success_timestamp_seconds", cluster)] == pytest.approx(
        event_time(settings, "nightly-01", "SnapshotCompleted"), abs=1e-3)
    assert metrics[("dws_snapshots_clusters", (("status", "Unavailable"),))] == 1
    assert metrics[("dws_snapshots_clusters", (("status", "Available"),))] == 0


async def test_health_fails_naming_the_relay_and_projection_while_they_lag_past_the_threshold(settings):  # noqa: F811
    settings = settings.model_copy(update={"health_max_lag_events": 3})
    app = await take_snapshot(settings, "nightly-01", "cmd-1")  # more than 3 events
    api = TestClient(bootstrap.build_api(settings))
    lagging = api.get("/health")
    assert lagging.status_code == 503 and lagging.json()["status"] == "failing"
    parts = lagging.json()["parts"]
    assert {name for name, part in parts.items() if part["status"] != "ok"} == {"relay", "projection"}
    assert parts["relay"]["lag_events"] == app.recorder.max_notification_id()

    await relay_everything(app, settings)
    bootstrap.build_projection(settings).follow()
    healthy = api.get("/health")
    assert healthy.status_code == 200, healthy.json()
    assert healthy.json()["parts"]["relay"] == {"status": "ok", "lag_events": 0}
    assert healthy.json()["set_aside"] == {"count": 0, "latest": []}


def test_health_names_the_store_and_views_while_their_postgresql_server_is_down(private_postgres, broker, tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=broker.bootstrap_servers,  # noqa: F811
                        event_store="postgres", health_timeout_seconds=2,
                        postgres_dsn=private_postgres.create_database("snapshots"))
    api = TestClient(bootstrap.build_api(settings))
    assert api.get("/health").status_code == 200

    private_postgres.stop()
    down = api.get("/health")
    assert down.status_code == 503
    parts = down.json()["parts"]
    assert (parts["store"]["status"], parts["views"]["status"], parts["broker"]["status"]) == \
        ("failing", "failing", "ok")
    assert parts["relay"]["status"] == parts["projection"]["status"] == "unknown"

    private_postgres.start()
    assert api.get("/health").status_code == 200
