"""The whole of `snapshotctl up` (up, broker, parts) SIGKILLed after a snapshot's events
were stored and relayed, but before the projection applied them: the embedded broker
kept nothing, yet the next `up` shows the snapshot as the store has it."""

import asyncio

import psutil

from services.snapshots import bootstrap, replay, views
from services.snapshots.client import EventFollower
from services.snapshots.domain import snapshot_id
from services.snapshots.projection import Projection
from services.snapshots.relay import Relay
from services.snapshots.settings import Settings
from tests.e2e.system import snapshotctl
from tests.e2e.up_process import Up, kill_tree, wait_for

SNAPSHOT = "before-the-crash"


def stored_and_relayed(settings: Settings) -> bool:
    """The snapshot is Available in the store and the relay has sent every stored event."""
    app = bootstrap.make_application(settings)
    try:
        snapshot = app.find(snapshot_id(SNAPSHOT))
        relayed = app.factory.tracking_recorder().max_tracking_id(Relay.tracking_name) or 0
        return bool(snapshot and snapshot.status == "Available"
                    and relayed >= app.recorder.max_notification_id())
    finally:
        app.close()


def rebuilt_from_store(settings: Settings, scratch) -> tuple[dict, dict]:
    """The snapshot and its cluster as the store's whole history makes them."""
    rebuilt = Projection(views.connect(f"sqlite:///{scratch}"))
    app = bootstrap.make_application(settings)
    try:
        rebuilt.catch_up(replay.store_reader(app, settings.service_id))
    finally:
        app.close()
    return views.get_snapshot(rebuilt._engine, SNAPSHOT), views.get_cluster(rebuilt._engine, "dws-demo")


async def completed_on_the_broker(up: Up) -> bool:
    """What `snapshotctl watch --from-beginning` sees: the snapshot's SnapshotCompleted."""
    async with EventFollower(up.kafka, "snapshot.events", from_beginning=True) as follower:
        async def first_completed():
            async for envelope in follower.events():
                if envelope.type == "SnapshotCompleted" and envelope.data["snapshot_name"] == SNAPSHOT:
                    return True
        return await asyncio.wait_for(first_completed(), 30)


async def test_after_the_whole_tree_is_killed_the_next_up_shows_the_snapshot_as_the_store_has_it(tmp_path):
    first = Up(tmp_path / "data").start().wait_until_serving()
    settings = Settings(data_dir=first.data_dir)
    # The projection falls behind (SIGSTOP): the snapshot's events reach only the broker.
    psutil.Process(first.child_pid("projection")).suspend()
    sent = snapshotctl("create", "dws-demo", SNAPSHOT, env=first.env)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: stored_and_relayed(settings), 60, "the snapshot stored Available and relayed")

    kill_tree(first.process.pid)

    second = Up(first.data_dir, first.kafka, first.http_port).start()
    try:
        snapshot, cluster = rebuilt_from_store(settings, tmp_path / "rebuilt.sqlite")
        assert snapshot["status"] == "Available" and cluster["status"] == "Available"
        wait_for(lambda: second.get(f"/snapshots/{SNAPSHOT}").json() == snapshot
                 and second.get("/clusters/dws-demo").json() == cluster, 60,
                 f"the view to equal the store: {snapshot}")
        assert await completed_on_the_broker(second)
        assert "re-published" in second.log()
    finally:
        assert second.stop() == 0
