"""Reading history from the event store: the reader the projection follows, and the replay
jobs of `snapshotctl replay` — rebuild the views and replace the live ones in one
transaction (a running API never shows a half-built list), and re-publish the store's
history to the events topic (same event ids, so consumers that deduplicate are unaffected).

The rebuild reads the log with the fast reader (`log_reader`), folds the final rows in
memory by the live projection's rules (`fold`) and writes them once, in bulk (`bulk`).
Should the fold meet an event type it has no rule for, the rebuild takes the slow road:
the live projection's own code, beside the live tables, then swapped in."""

import gc
import logging

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, insert, select

from events.envelope import Envelope
from events.kafka import new_producer
from services.snapshots import bulk
from services.snapshots.application import SnapshotsApplication
from services.snapshots.fold import Fold, UnknownToFold
from services.snapshots.log_reader import LogReader, read_rows
from services.snapshots.projection import Projection, StoreReader
from services.snapshots.relay import contexts_for, publish, translate
from services.snapshots.views import LIVE, ViewTables, define_tables

if TYPE_CHECKING:
    from services.snapshots.bootstrap import ReplayParts

log = logging.getLogger(__name__)
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


def rebuild_views(parts: "ReplayParts", source: str, batch_size: int = 5000) -> int:
    """Build the views from the store and replace the live ones; returns how many events
    were applied."""
    try:
        return fold_views(parts, source, batch_size)
    except UnknownToFold as error:
        log.warning("%s; replaying through the live projection instead (slower)", error)
        return rebuild_views_slowly(parts, source, batch_size)


def fold_views(parts: "ReplayParts", source: str, batch_size: int = 5000) -> int:
    """Fold the store's history in memory, then write the final rows once, in bulk."""
    reader, fold, after = LogReader(parts.app.mapper, source, contexts_for(parts.app)), Fold(), 0
    collecting = gc.isenabled()
    gc.disable()  # millions of rows held at once, no cycles among them: the collector would rescan them all
    try:
        while batch := read_rows(parts.app.recorder, after + 1, batch_size):
            after = batch[-1][0]
            fold.apply(reader.read(batch), after)
        bulk.write(parts.engine, LIVE, fold)
    finally:
        if collecting:
            gc.enable()
    for position, event_type, reason in fold.set_aside:
        parts.set_aside.record("projection", position, event_type, reason)
    return fold.applied


def rebuild_views_slowly(parts: "ReplayParts", source: str, batch_size: int = 2000) -> int:
    """Build the views from the store with the live projection's code, in tables beside
    the live ones, then swap."""
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
