"""Reading history from the event store: the reader the projection follows, and the replay
jobs of `snapshotctl replay` — rebuild the views beside the live ones and swap them in one
transaction (a running API never shows a half-built list), and re-publish the store's
history to the events topic (same event ids, so consumers that deduplicate are unaffected)."""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, insert, select

from events.envelope import Envelope
from events.kafka import new_producer
from services.snapshots.application import SnapshotsApplication
from services.snapshots.projection import Projection, StoreReader
from services.snapshots.relay import contexts_for, publish, translate
from services.snapshots.views import LIVE, ViewTables, define_tables

if TYPE_CHECKING:
    from services.snapshots.bootstrap import ReplayParts

REBUILD_SUFFIX = "__rebuild"


def store_reader(app: SnapshotsApplication, source: str) -> StoreReader:
    """Published events after a position, as the relay publishes them. Untranslatable ones
    are skipped here (the relay records them in the set-aside log)."""
    contexts = contexts_for(app)

    def read(after: int, limit: int) -> tuple[int, list[Envelope]]:
        batch = app.recorder.select_notifications(after + 1, limit)
        if not batch:
            return after, []
        return batch[-1].id, list(translate(app, batch, source, contexts=contexts))
    return read


def stored_envelopes(parts: "ReplayParts", source: str, batch_size: int = 1000,
                     record_set_aside: bool = False) -> Iterator[Envelope]:
    """Every published event in the store, in notification order."""
    set_aside, contexts = parts.set_aside if record_set_aside else None, contexts_for(parts.app)
    for batch in parts.app.notifications(batch_size=batch_size):
        yield from translate(parts.app, batch, source, set_aside, contexts)


def rebuild_views(parts: "ReplayParts", source: str, batch_size: int = 2000) -> int:
    """Build the views from the store in tables beside the live ones, then swap."""
    side = define_tables(REBUILD_SUFFIX)
    side.metadata.drop_all(parts.engine)
    applied = Projection(parts.engine, side, parts.set_aside).catch_up(
        store_reader(parts.app, source), batch_size)
    swap_in(parts.engine, side, LIVE)
    side.metadata.drop_all(parts.engine)
    return applied


def swap_in(engine: Engine, rebuilt: ViewTables, live: ViewTables) -> None:
    """Replace the live views by the rebuilt ones in one transaction: readers see the old
    list or the new one, never a mix; a projection writing meanwhile finds its position
    moved and continues from the rebuilt one."""
    with engine.begin() as tx:
        for source, target in zip(rebuilt.all(), live.all()):
            tx.execute(delete(target))
            tx.execute(insert(target).from_select(list(source.c.keys()), select(source)))


async def republish(parts: "ReplayParts", bootstrap_servers: str, topic: str, source: str) -> int:
    """Send the whole history again. The relay's set-aside records are replaced by what
    this full pass could not translate (none, once the mapping is fixed)."""
    parts.set_aside.clear("relay")
    producer = new_producer(bootstrap_servers)
    await producer.start()
    try:
        return await publish(producer, topic, stored_envelopes(parts, source, record_set_aside=True))
    finally:
        await producer.stop()
