"""Replay's fold against the live projection: the same history, through the real
application, on real SQLite and PostgreSQL stores; every view table compared row for row
as stored, and every published event of the fast reader compared with the relay's."""

import uuid

import pytest
from sqlalchemy import text

from events.commands import (CreateSnapshotRequested, DeleteSnapshotRequested, RegisterCluster,
                             RemoveSnapshotPolicy, ReportClusterStatus, RestartClusterRequested,
                             RestoreSnapshotRequested, SetSnapshotPolicy)
from services.snapshots import bootstrap, fold, replay
from services.snapshots.domain import CommandContext
from services.snapshots.log_reader import LogReader, Published, read_rows
from services.snapshots.published import to_envelope
from services.snapshots.relay import contexts_for
from services.snapshots.views import LIVE
from tests.integration.test_relay_and_projection import settings  # noqa: F401

KEYS = {"view_snapshots": "key", "view_clusters": "key", "view_history": "event_id", "view_position": "name"}


def trace() -> str:
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def varied_history(settings, follow) -> None:  # noqa: F811
    """Creates, completions (one with a warning), failures, deletes, restores (completed
    and failed), status reports, restarts, rejections; operators, a service account and
    unauthenticated commands, with and without trace context; several clusters. The live
    projection follows along, in several batches, as it would while the service runs."""
    app = bootstrap.make_application(settings)
    alice = CommandContext("app_user", "alice", trace(), "vendor=1")
    etl = CommandContext("service_account", "etl-runner", trace())
    clusters = ["dws-one", "DWS-Two", "dws-three"]
    for name in clusters:
        app.handle(f"reg-{name}", RegisterCluster(cluster_name=name, driver="sqlite",
                                                  target=str(settings.data_dir / f"{name}.sqlite")), context=alice)
    follow()
    for i in range(12):
        cluster, name = clusters[i % 3], f"Nightly-{i:02d}"
        context = (alice, etl, None)[i % 3]
        app.handle(f"create-{i}", CreateSnapshotRequested(cluster_name=cluster, snapshot_name=name,
                                                          description=f"run {i} ✓"), context=context)
        if i % 4 == 3:
            app.fail_snapshot(cluster, name, f"disk full on {cluster}:\n\tC:\\data ✗")
            continue
        app.make_read_only(cluster, name)
        app.complete_snapshot(cluster, name, 1000 + i, "slow copy" if i % 5 == 0 else None,
                              sha256="ab" * 32, attempt=f"a{i}")
    follow()
    rejected = [CreateSnapshotRequested(cluster_name="dws-nope", snapshot_name="orphan-01"),
                CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-00"),
                DeleteSnapshotRequested(cluster_name="dws-one", snapshot_name="never-was"),
                RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/elsewhere")]
    for n, command in enumerate(rejected):
        app.handle(f"bad-{n}", command, context=(etl, None)[n % 2])
    app.handle("create-busy", CreateSnapshotRequested(cluster_name="dws-three", snapshot_name="busy-01"),
               context=alice)
    app.handle("create-while-busy", CreateSnapshotRequested(cluster_name="dws-three", snapshot_name="busy-02"),
               context=etl)  # refused: a snapshot in progress
    app.handle("delete-0", DeleteSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-00"), context=alice)
    app.handle("delete-3", DeleteSnapshotRequested(cluster_name="dws-one", snapshot_name="NIGHTLY-03"), context=etl)
    app.handle("status-1", ReportClusterStatus(cluster_name="DWS-Two", status="Available"), context=etl)
    app.handle("restart-2", RestartClusterRequested(cluster_name="DWS-Two"), context=alice)
    app.handle("policy-1", SetSnapshotPolicy(cluster_name="dws-one", schedule="rate(1 day)", keep_days=7),
               context=alice)
    app.handle("policy-2", SetSnapshotPolicy(cluster_name="DWS-Two", schedule="0 3 * * *", keep_days=-1),
               context=etl)
    app.handle("policy-2-off", RemoveSnapshotPolicy(cluster_name="DWS-Two"), context=etl)
    app.handle("create-kept", CreateSnapshotRequested(cluster_name="DWS-Two", snapshot_name="kept-01",
                                                      retention_days=3), context=alice)
    app.complete_snapshot("DWS-Two", "kept-01", 5, None)
    app.handle("reg-pg", RegisterCluster(cluster_name="dws-pg", driver="postgres",
                                         target="host=127.0.0.1 dbname=warehouse user=postgres"), context=alice)
    for n, outcome in enumerate(("complete", "fail")):  # online: unlocked before the outcome
        app.handle(f"online-{n}", CreateSnapshotRequested(cluster_name="dws-pg", snapshot_name=f"online-{n:02d}",
                                                          online=True), context=etl)
        app.make_read_only("dws-pg", f"online-{n:02d}")
        app.unlock_online("dws-pg", f"online-{n:02d}")
        if outcome == "complete":
            app.complete_snapshot("dws-pg", f"online-{n:02d}", 77, None)
        else:
            app.fail_snapshot("dws-pg", f"online-{n:02d}", "dump failed")
    follow()
    app.handle("restore-1", RestoreSnapshotRequested(cluster_name="DWS-Two", snapshot_name="nightly-01",
                                                     target_cluster_name="dws-copy"), context=alice)
    app.complete_restore("nightly-01", "sqlite", str(settings.data_dir / "copy.sqlite"))
    app.handle("restore-2", RestoreSnapshotRequested(cluster_name="dws-three", snapshot_name="nightly-02",
                                                     target_cluster_name="dws-copy-2"), context=etl)
    app.fail_restore("nightly-02", "target unreachable")
    app.handle("restore-4", RestoreSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-06",
                                                     target_cluster_name="dws-copy-3"))  # left Restoring
    app.handle("create-again", CreateSnapshotRequested(cluster_name="dws-copy", snapshot_name="copy-01"),
               context=alice)  # on the restored cluster, left Creating
    follow()
    app.close()


def stored_rows(engine) -> dict[str, list]:
    """Every view table as the database holds it (PostgreSQL: each row's text form, so
    JSON and timestamps are compared as stored)."""
    tables = {}
    with engine.connect() as connection:
        for table, key in KEYS.items():
            if engine.dialect.name == "postgresql":
                query = f'SELECT CAST(t AS text) FROM "{table}" t ORDER BY "{key}"'
            else:
                query = f'SELECT * FROM "{table}" ORDER BY "{key}"'
            tables[table] = [tuple(row) for row in connection.execute(text(query))]
    return tables


def test_the_fold_builds_every_view_row_as_the_live_projection_does(settings):  # noqa: F811
    follow = bootstrap.build_projection(settings).follow
    varied_history(settings, follow)
    engine = bootstrap.make_view_engine(settings)
    live = stored_rows(engine)
    assert len(live["view_clusters"]) == 5 and len(live["view_snapshots"]) == 15
    parts = bootstrap.build_replay(settings)
    applied = replay.fold_views(parts, settings.service_id)  # the fold itself, no fallback
    assert applied == len(live["view_history"])
    assert stored_rows(engine) == live
    assert parts.set_aside.count() == 0
    with parts.engine.connect() as connection:  # each command's actor and trace, as the live rows
        actors = set(connection.execute(text(
            "SELECT correlationid, authtype, authid, traceparent IS NOT NULL FROM view_history")))
    assert ("delete-3", "service_account", "etl-runner", True) in actors
    assert ("delete-0", "app_user", "alice", True) in actors
    assert ("restore-4", "unauthenticated", None, False) in actors
    assert_the_fast_reader_publishes_what_the_relay_publishes(settings)


def assert_the_fast_reader_publishes_what_the_relay_publishes(settings):  # noqa: F811
    app = bootstrap.make_application(settings)
    rows = read_rows(app.recorder, 1, 10_000)
    fast = LogReader(app.mapper, "test", contexts_for(app)).read(rows)
    slow_contexts = contexts_for(app)
    slow = [Published.of(e) for e in (to_envelope(app.mapper, n, "test", slow_contexts)
                                       for n in app.recorder.select_notifications(1, 10_000)) if e]
    assert len(fast) == len(slow) > 60
    assert all(event.checked for event in fast)  # nothing here needed the slow road
    attributes = [a for a in Published.__slots__ if a not in ("checked", "envelope")]
    for ours, theirs in zip(fast, slow):
        assert [getattr(ours, a) for a in attributes] == [getattr(theirs, a) for a in attributes]
        assert list(ours.data) == list(theirs.data)  # the same order: the same JSON text
    app.close()


def test_a_type_the_fold_does_not_know_makes_replay_take_the_live_projections_road(settings, monkeypatch):  # noqa: F811
    follow = bootstrap.build_projection(settings).follow
    varied_history(settings, follow)
    engine = bootstrap.make_view_engine(settings)
    live = stored_rows(engine)
    # As if CommandRejected were a new event type whose effect on the views the fold lacks.
    monkeypatch.setattr(fold, "HISTORY_ONLY", frozenset({"ClusterRestarted"}))
    parts = bootstrap.build_replay(settings)
    with pytest.raises(fold.UnknownToFold, match="CommandRejected"):
        replay.fold_views(parts, settings.service_id)
    assert stored_rows(engine) == live  # nothing written by the fold that gave up
    assert replay.rebuild_views(parts, settings.service_id) == len(live["view_history"])
    assert stored_rows(engine) == live


def test_an_empty_store_replays_to_empty_views(settings):  # noqa: F811
    parts = bootstrap.build_replay(settings)
    assert replay.rebuild_views(parts, settings.service_id) == 0
    assert all(rows == [] for rows in stored_rows(parts.engine).values())
    assert set(KEYS) == {table.name for table in LIVE.all()}
