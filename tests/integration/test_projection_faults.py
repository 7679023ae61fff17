"""The projection against bad input and replays: the store is the truth. Real SQLite and
PostgreSQL stores and views."""

import threading

from sqlalchemy import insert

from events.commands import CreateSnapshotRequested, RegisterCluster
from events.envelope import Envelope
from services.snapshots import bootstrap, replay, views
from services.snapshots.set_aside import SetAsideLog
from tests.integration.test_relay_and_projection import settings, take_snapshot  # noqa: F401


def stored(settings):  # noqa: F811
    return list(replay.stored_envelopes(bootstrap.build_replay(settings), "test"))


async def test_a_forged_event_with_an_absurd_sequence_is_set_aside_and_skips_nothing(settings):  # noqa: F811
    await take_snapshot(settings, "nightly-01", "cmd-1")
    follow = bootstrap.build_projection(settings).follow
    forged = Envelope(type="SnapshotDeleted", source="intruder", subject="dws-one", sequence="9" * 30,
                      data={"cluster_name": "dws-one", "snapshot_name": "nightly-01"})
    follow([forged])
    await take_snapshot(settings, "nightly-02", "cmd-2")
    follow(stored(settings)[-3:])
    engine = bootstrap.make_view_engine(settings)
    assert [s["name"] for s in views.list_snapshots(engine)[0]] == ["nightly-02", "nightly-01"]
    [entry] = SetAsideLog(engine).latest()
    assert entry["part"] == "projection" and "not in the event store" in entry["error"]


async def test_one_event_the_views_cannot_hold_is_set_aside_and_the_others_are_kept(settings):  # noqa: F811
    await take_snapshot(settings, "nightly-01", "cmd-1")
    engine = bootstrap.make_view_engine(settings)
    with engine.begin() as tx:  # a view row in the way of the snapshot's SnapshotStarted
        tx.execute(insert(views.snapshots).values(key="nightly-01", name="nightly-01", cluster_name="x",
                                                  status="Failed", snapshot_type="Manual",
                                                  description="", sequence=0))
    assert bootstrap.build_projection(settings).follow() == len(stored(settings)) - 1
    assert views.get_cluster(engine, "dws-one")["status"] == "Available"
    [entry] = SetAsideLog(engine).latest()
    assert entry["event_type"] == "SnapshotStarted"


def many_snapshots(settings, count: int) -> None:  # noqa: F811
    app = bootstrap.make_application(settings)
    app.handle("reg", RegisterCluster(cluster_name="dws-big", driver="sqlite",
                                      target=str(settings.data_dir / "big.sqlite")))
    for i in range(count):
        app.handle(f"c{i}", CreateSnapshotRequested(cluster_name="dws-big", snapshot_name=f"snap-{i:05d}"))
        app.complete_snapshot("dws-big", f"snap-{i:05d}", i, None)


def test_a_replay_never_shows_a_half_built_list(settings):  # noqa: F811
    many_snapshots(settings, 400)
    engine = bootstrap.make_view_engine(settings)
    replay.rebuild_views(bootstrap.build_replay(settings), "test")
    seen, done = set(), threading.Event()

    def rebuild():
        replay.rebuild_views(bootstrap.build_replay(settings), "test", batch_size=200)
        done.set()

    threading.Thread(target=rebuild).start()
    while not done.is_set():
        seen.add(views.list_snapshots(engine, limit=1)[1])
    assert seen <= {400}
    assert views.list_snapshots(engine, limit=1)[1] == 400
