"""The replay jobs (`snapshotctl replay`): rebuild the views from the event store, and
re-publish the store's history to the events topic (same event ids, so consumers that
deduplicate by id are unaffected)."""

from collections.abc import Iterator

from events.envelope import Envelope
from events.kafka import new_producer
from services.snapshots.bootstrap import ReplayParts
from services.snapshots.relay import publish, translate


def stored_envelopes(parts: ReplayParts, source: str, batch_size: int = 1000,
                     record_set_aside: bool = False) -> Iterator[Envelope]:
    """Every published event in the store, in notification order."""
    set_aside = parts.set_aside if record_set_aside else None
    for batch in parts.app.notifications(batch_size=batch_size):
        yield from translate(parts.app, batch, source, set_aside)


def rebuild_views(parts: ReplayParts, source: str, batch_size: int = 2000) -> int:
    parts.projection.reset()
    applied, batch = 0, []
    for envelope in stored_envelopes(parts, source, batch_size):
        batch.append(envelope)
        if len(batch) == batch_size:
            applied, batch = applied + parts.projection.apply_batch(batch), []
    return applied + parts.projection.apply_batch(batch)


async def republish(parts: ReplayParts, bootstrap_servers: str, topic: str, source: str) -> int:
    """Send the whole history again. The relay's set-aside records are replaced by what
    this full pass could not translate (none, once the mapping is fixed)."""
    parts.set_aside.clear("relay")
    producer = new_producer(bootstrap_servers)
    await producer.start()
    try:
        return await publish(producer, topic, stored_envelopes(parts, source, record_set_aside=True))
    finally:
        await producer.stop()
