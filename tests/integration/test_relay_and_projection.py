"""The outbox relay and the projection against the real broker and real stores."""

import asyncio

import pytest

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots import bootstrap, replay
from services.snapshots.client import EventFollower
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.relay import Relay, SharedProducer
from services.snapshots.settings import Settings
from events.kafka import ensure_topics
from services.snapshots.views import get_cluster, list_snapshots, snapshot_history
from tests.conftest import postgres_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path, broker):
    topic = f"events-{request.node.name[-40:].replace('[', '-').replace(']', '')}-{id(tmp_path)}"
    fields = dict(data_dir=tmp_path, kafka_bootstrap_servers=broker.bootstrap_servers,
                  events_topic=topic, event_store=request.param)
    if request.param == "postgres":
        fields["postgres_dsn"] = postgres_dsn(request.getfixturevalue("postgres_database"))
    return Settings(**fields)


async def take_snapshot(settings: Settings, name: str, command_id: str):
    app = bootstrap.make_application(settings)
    warehouse = settings.data_dir / "dws-one.sqlite"
    if not warehouse.exists():
        create_demo_warehouse(warehouse, 20, 50)
        app.handle("reg-" + name, RegisterCluster(cluster_name="dws-one", driver="sqlite", target=str(warehouse)))
    app.handle(command_id, CreateSnapshotRequested(cluster_name="dws-one", snapshot_name=name))
    workflow = bootstrap.make_workflow(app, bootstrap.make_drivers(settings), settings.snapshot_repository, 30)
    workflow.start("dws-one")
    await workflow.wait_idle()
    return app


async def relay_everything(app, settings) -> int:
    producer = SharedProducer(settings.kafka_bootstrap_servers)
    relay = Relay(app, producer, settings.events_topic, "test")
    sent = 0
    while count := await relay.publish_pending():
        sent += count
    await producer.stop()
    return sent


async def read_topic(settings, expected: int, timeout: float = 20.0) -> list:
    got = []
    async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic, True) as follower:
        async def collect():
            async for envelope in follower.events():
                got.append(envelope)
                if len(got) >= expected:
                    return
        await asyncio.wait_for(collect(), timeout)
    return got


async def test_the_relay_publishes_a_snapshot_workflow_in_order_keyed_and_correlated(settings):
    await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    await relay_everything(app, settings)
    events = await read_topic(settings, 6)
    assert [e.type for e in events] == ["ClusterRegistered", "ClusterLocked", "SnapshotStarted",
                                        "ClusterReadOnly", "SnapshotCompleted", "ClusterUnlocked"]
    assert {e.correlationid for e in events[1:]} == {"cmd-1"}
    sequences = [int(e.sequence) for e in events]
    assert sequences == sorted(set(sequences))
    assert {e.subject for e in events} == {"dws-one"}
    assert events[4].data["size_bytes"] > 0


async def test_the_relay_resumes_from_its_position_and_sends_nothing_twice(settings):
    await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    first = await relay_everything(app, settings)
    app = await take_snapshot(settings, "nightly-02", "cmd-2")
    restarted = bootstrap.make_application(settings)  # a new process would start like this
    second = await relay_everything(restarted, settings)
    events = await read_topic(settings, 11)
    assert first > 0 and second > 0
    assert len({e.id for e in events}) == len(events) == 11


async def test_the_projection_counts_a_redelivered_event_once(settings):
    await take_snapshot(settings, "nightly-01", "cmd-1")
    follow = bootstrap.build_projection(settings).follow
    delivered = list(replay.stored_envelopes(bootstrap.build_replay(settings), "test"))
    assert follow(delivered) == len(delivered)
    assert follow(delivered + delivered) == 0
    snapshots, count = list_snapshots(bootstrap.make_view_engine(settings))
    assert count == 1 and snapshots[0]["status"] == "Available"
    assert len(snapshot_history(bootstrap.make_view_engine(settings), "nightly-01")) == 5


def test_replay_rebuilds_the_same_views_from_the_event_store(settings):
    app = asyncio.run(take_snapshot(settings, "nightly-01", "cmd-1"))
    replay.rebuild_views(bootstrap.build_replay(settings), "test")
    engine = bootstrap.make_view_engine(settings)
    before = list_snapshots(engine), get_cluster(engine, "DWS-ONE")
    replay.rebuild_views(bootstrap.build_replay(settings), "test")
    assert (list_snapshots(engine), get_cluster(engine, "dws-one")) == before
    assert before[1]["status"] == "Available" and before[0][0][0]["name"] == "nightly-01"
    app.close()


async def test_the_view_catches_up_with_the_store_when_the_topic_lost_events(settings):
    await take_snapshot(settings, "nightly-01", "cmd-1")
    follow = bootstrap.build_projection(settings).follow
    delivered = list(replay.stored_envelopes(bootstrap.build_replay(settings), "test"))
    assert follow(delivered[:2]) == len(delivered)  # the rest never reached the topic
    [snapshot] = list_snapshots(bootstrap.make_view_engine(settings))[0]
    assert snapshot["status"] == "Available"
