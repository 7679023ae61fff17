"""However many service instances share an event store, exactly one relay publishes at a
time: every event reaches the topic once; when the publishing instance stops, another takes
over. Real broker, SQLite file and PostgreSQL stores."""

import asyncio

from events.kafka import ensure_topics
from services.snapshots import bootstrap
from services.snapshots.client import EventFollower
from services.snapshots.relay import Relay, SharedProducer
from tests.integration.test_relay_and_projection import read_topic, settings, take_snapshot  # noqa: F401


def instance(app, settings):  # noqa: F811
    """One service instance's relay, with its own lease handle, as bootstrap builds it."""
    producer = SharedProducer(settings.kafka_bootstrap_servers)
    return Relay(app, producer, settings.events_topic, "test", lease=bootstrap.make_relay_lease(settings))


async def everything_on_the_topic(settings, settle: float = 1.5) -> list:  # noqa: F811
    """All events on the topic: read until nothing more arrives for `settle` seconds."""
    got = []
    async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic, True) as follower:
        events = follower.events()
        while True:
            try:
                got.append(await asyncio.wait_for(anext(events), settle))
            except asyncio.TimeoutError:
                return got


async def stored_event_count(app) -> int:
    return sum(1 for batch in app.notifications() for n in batch if not n.topic.endswith("CommandReceived"))


async def test_two_instances_publish_every_event_once_and_the_second_takes_over(settings):  # noqa: F811
    await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    first, second = instance(app, settings), instance(app, settings)
    running = [asyncio.create_task(relay.run(0.05, lease_retry_seconds=0.2)) for relay in (first, second)]
    try:
        await take_snapshot(settings, "nightly-02", "cmd-2")
        published = await read_topic(settings, await stored_event_count(app))
        again = await everything_on_the_topic(settings)
        leader = next(t for t, r in zip(running, (first, second)) if r._leading)
        leader.cancel()  # the publishing instance stops; its lease goes with it
        await take_snapshot(settings, "nightly-03", "cmd-3")
        await read_topic(settings, await stored_event_count(app), timeout=30)
        after = await everything_on_the_topic(settings)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    assert [e.id for e in again] == [e.id for e in published], "an event was published twice"
    assert [e.id for e in after[:len(published)]] == [e.id for e in published]
    assert len({e.id for e in after}) == len(after) == await stored_event_count(app)
    assert {e.correlationid for e in after[len(published):]} == {"cmd-3"}
