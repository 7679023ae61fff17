"""Finding snapshots over HTTP: `GET /snapshots` filtered by type, start time and name, in
either order, with 400 `{code, reason}` for a bad value; `POST /snapshots/{name}/cancel`.
The real API over views the real projection built from a real store (SQLite, PostgreSQL)."""

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots import bootstrap, views
from services.snapshots.api import create_api
from services.snapshots.tokens import TokenStore
from tests.integration.test_relay_and_projection import settings  # noqa: F401


@pytest.fixture
def api(settings):  # noqa: F811
    app = bootstrap.make_application(settings)
    app.handle("r1", RegisterCluster(cluster_name="dws-one", driver="sqlite", target=str(settings.data_dir / "one.sqlite")))
    for i, name in enumerate(["Nightly-01", "weekly-02", "nightly-03"]):
        app.handle(f"c{i}", CreateSnapshotRequested(cluster_name="dws-one", snapshot_name=name))
        app.fail_snapshot("dws-one", name, "no file")
    bootstrap.build_projection(settings).follow()
    engine = bootstrap.make_view_engine(settings)
    with engine.begin() as tx:  # an Automated one, as a policy would make it (not on this branch)
        tx.execute(insert(views.snapshots).values(key="auto-dws-one-1", name="auto-dws-one-1", cluster_name="dws-one",
                                                  status="Available", snapshot_type="Automated", description="",
                                                  started_at=datetime.fromisoformat("2020-01-01T00:00:00+00:00"),
                                                  sequence=0))
    tokens, sent = TokenStore(engine), []

    async def send(envelope):
        sent.append(envelope)

    client = TestClient(create_api(engine, tokens, send, bootstrap.allowed_targets(settings)))
    client.headers["Authorization"] = "Bearer " + tokens.create("ops", "operator")
    client.sent = sent
    client.viewer = {"Authorization": "Bearer " + tokens.create("looker", "viewer")}
    return client


def names(api, **params) -> list[str]:
    answer = api.get("/snapshots", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.json()["count"] == len(answer.json()["snapshots"])
    return [s["name"] for s in answer.json()["snapshots"]]


def test_the_list_is_newest_first_by_default_and_oldest_first_on_request(api):
    assert names(api) == ["nightly-03", "weekly-02", "Nightly-01", "auto-dws-one-1"]
    assert names(api, sort="-started") == names(api)
    assert names(api, sort="started") == ["auto-dws-one-1", "Nightly-01", "weekly-02", "nightly-03"]


def test_type_name_and_start_time_filter_the_list(api):
    assert names(api, type="Automated") == ["auto-dws-one-1"]
    assert names(api, type="Manual", q="NIGHTLY") == ["nightly-03", "Nightly-01"]
    assert names(api, q="%") == [] and names(api, q="_") == []  # matched as themselves
    second = api.get("/snapshots/weekly-02").json()["started_at"]
    assert names(api, since=second) == ["nightly-03", "weekly-02"]
    assert names(api, until=second, type="Manual") == ["weekly-02", "Nightly-01"]
    assert names(api, since=second, until=second) == ["weekly-02"]
    naive = datetime.fromisoformat(second).replace(tzinfo=None) + timedelta(microseconds=1)
    assert names(api, since=naive.isoformat()) == ["nightly-03"]  # no zone: UTC
    assert names(api, since="2019-12-31", until="2020-01-02") == ["auto-dws-one-1"]


@pytest.mark.parametrize("params, named", [
    ({"type": "manual"}, "type"), ({"sort": "name"}, "sort"), ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01"}, "until"), ({"since": "2026-02-01", "until": "2026-01-01"}, "since is after until"),
])
def test_a_bad_filter_is_a_400_naming_it(api, params, named):
    answer = api.get("/snapshots", params=params)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_query" and named in answer.json()["reason"]


def test_a_cancel_is_published_for_the_snapshots_own_cluster_by_an_operator(api):
    answer = api.post("/snapshots/NIGHTLY-03/cancel", headers={"Idempotency-Key": "k-1"})
    assert (answer.status_code, answer.json()) == (202, {"command_id": "k-1"})
    assert answer.headers["Location"] == "/commands/k-1"
    [envelope] = api.sent
    assert (envelope.type, envelope.data, envelope.authid) == (
        "CancelSnapshotRequested", {"cluster_name": "dws-one", "snapshot_name": "nightly-03"}, "ops")
    assert api.post("/snapshots/nope-01/cancel").json()["code"] == "unknown_snapshot"
    assert api.post("/snapshots/nightly-03/cancel", headers=api.viewer).status_code == 403
