"""The projection: stored events → the snapshot and cluster views.

The event store is the truth. The projection keeps one position in the store's
notification log and applies, in order, every published event after it, read from the
store itself; the events that arrive on `snapshot.events` only say "there is more" (and
are checked against the store). So nothing on the topic can make the view skip a real
event, a forged or foreign event is set aside, and a view behind the store (a broker that
lost events, a crash) catches up on its own. `snapshotctl replay` applies the same way.

Events are applied in batches, each batch and the new position in one transaction; if a
batch fails, its events are applied one by one so that one bad event is set aside
(logged, recorded in the set-aside log, shown on `/health`) and the others kept."""

import logging
from collections.abc import Callable, Iterable

from sqlalchemy import Engine, delete, func, insert, select, update

from events.codec import parse_event
from events.envelope import Envelope
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots import logs
from services.snapshots.set_aside import SetAsideLog
from services.snapshots.view_rules import INSERT, RULES, UPDATE, RowChange
from services.snapshots.views import LIVE, ViewTables, create_tables

log = logging.getLogger(__name__)

#: (after, limit) → (the last notification id read, the published events among them).
StoreReader = Callable[[int, int], tuple[int, list[Envelope]]]
POSITION = "projection"
#: Telemetry published straight to the topic (`progress.py`): never in the store.
PROGRESS = "SnapshotProgress"  # events.events.TELEMETRY_EVENTS
_LIMITS = {"cluster_name": 256, "snapshot_name": 64, "target_cluster_name": 256}


class PositionMoved(Exception):
    """Another projection instance applied the same events first; read the position again."""


class Projection:
    def __init__(self, engine: Engine, tables: ViewTables = LIVE, set_aside: SetAsideLog | None = None):
        self._engine = engine
        self._tables = tables
        self._set_aside = set_aside
        create_tables(tables.metadata, engine)
        #: What each event type does to the views (`view_rules`: the same rules replay's fold uses).
        self._handlers: dict[str, Callable] = {name: self._applying(rule) for name, rule in RULES.items()}

    def position(self) -> int:
        table = self._tables.position
        with self._engine.connect() as connection:
            return connection.execute(select(table.c.position).where(table.c.name == POSITION)).scalar() or 0

    def catch_up(self, read_store: StoreReader, batch_size: int = 2000) -> int:
        """Apply everything the store holds after the position; returns how many applied."""
        applied = 0
        while True:
            position = self.position()
            last, envelopes = read_store(position, batch_size)
            if last <= position:
                return applied
            try:
                applied += self.apply_batch(envelopes, position, last)
            except PositionMoved:
                continue
            # One line a batch, naming its commands: a grep of a command id finds it.
            log.info("applied %d events (positions %d-%d) to the views", len(envelopes),
                     position + 1, last, extra=logs.batch_fields(envelopes))

    def apply_batch(self, envelopes: list[Envelope], after: int, up_to: int) -> int:
        """Apply store events that follow position `after`, and move it to `up_to`."""
        good = [e for e in envelopes if self._accepts(e)]
        try:
            with self._engine.begin() as tx:
                self._apply(tx, good)
                self._advance(tx, after, up_to)
            return len(good)
        except PositionMoved:
            raise
        except Exception as error:  # noqa: BLE001 - find the event that broke the batch
            log.warning("projection batch after %d failed (%s); applying one by one", after, error)
            return self._apply_one_by_one(good, after, up_to)

    def check_delivered(self, envelopes: Iterable[Envelope], store_position: int) -> None:
        """Set aside events from the topic that the store does not hold."""
        for envelope in envelopes:
            if envelope.sequence is None or int(envelope.sequence) > store_position:
                self._put_aside(envelope, "not in the event store (forged, or from another store)")

    def _apply_one_by_one(self, envelopes: list[Envelope], after: int, up_to: int) -> int:
        applied, position = 0, after
        for envelope in envelopes:
            sequence = int(envelope.sequence)
            try:
                with self._engine.begin() as tx:
                    self._apply(tx, [envelope])
                    self._advance(tx, position, sequence)
                applied += 1
            except PositionMoved:
                raise
            except Exception as error:  # noqa: BLE001 - this one is bad: set it aside, go on
                self._put_aside(envelope, f"{type(error).__name__}: {error}")
                with self._engine.begin() as tx:
                    self._advance(tx, position, sequence)
            position = sequence
        with self._engine.begin() as tx:
            self._advance(tx, position, up_to)
        return applied

    def _accepts(self, envelope: Envelope) -> bool:
        problem = _problem(envelope)
        if problem:
            self._put_aside(envelope, problem)
        return problem is None

    def _put_aside(self, envelope: Envelope, reason: str) -> None:
        log.error("projection set aside event %s (%s, sequence %s): %s",
                  envelope.id, envelope.type, envelope.sequence, reason)
        if self._set_aside is not None:
            position = min(int(envelope.sequence or 0), 2**63 - 1)  # a forged one may be absurd
            self._set_aside.record("projection", position, envelope.type, reason)

    def _apply(self, tx, envelopes: list[Envelope]) -> None:
        rows = []
        for envelope in envelopes:
            handler = self._handlers.get(envelope.type)
            if handler is not None:
                handler(tx, envelope.data, envelope)
            rows.append(history_row(envelope))
        if rows:  # one executemany: most of a replay's rows are history
            tx.execute(insert(self._tables.history), rows)

    def _advance(self, tx, after: int, up_to: int) -> None:
        table = self._tables.position
        if after == 0 and tx.execute(select(table.c.position).where(table.c.name == POSITION)).first() is None:
            tx.execute(insert(table).values(name=POSITION, position=up_to))
            return
        moved = tx.execute(update(table).where(table.c.name == POSITION, table.c.position == after)
                           .values(position=up_to))
        if moved.rowcount != 1:
            raise PositionMoved(after)

    def apply_progress(self, envelopes: Iterable[Envelope]) -> int:
        """Keep the latest `SnapshotProgress` of each Creating snapshot (telemetry read from
        the topic: never in the store or the history). One for a snapshot that is no
        longer Creating (it arrived after the outcome) or of another cluster is ignored."""
        latest = {}
        for envelope in envelopes:
            try:
                parse_event(envelope)
            except Exception as error:  # noqa: BLE001 - a forged or broken one: skipped
                log.warning("skipping an invalid SnapshotProgress %s: %s", envelope.id, error)
                continue
            latest[name_key(str(envelope.data["snapshot_name"]))] = envelope.data
        snapshots, applied = self._tables.snapshots, 0
        with self._engine.begin() as tx:
            for key, data in latest.items():
                figures = {k: v for k, v in data.items() if k not in ("cluster_name", "snapshot_name")}
                applied += tx.execute(update(snapshots).where(
                    snapshots.c.key == key, snapshots.c.status == SnapshotStatus.CREATING,
                    func.lower(snapshots.c.cluster_name) == name_key(str(data["cluster_name"])))
                    .values(progress=figures)).rowcount
        return applied

    def _applying(self, rule: Callable[..., tuple[RowChange, ...]]) -> Callable:
        def handler(tx, data, envelope) -> None:
            for change in rule(data, envelope):
                self._execute(tx, change)
        return handler

    def _execute(self, tx, change: RowChange) -> None:
        table = getattr(self._tables, change.table)
        if change.only_if is not None:  # (table, key, column): that row's column must be true
            other, key, column = change.only_if
            other = getattr(self._tables, other)
            if not tx.execute(select(other.c[column]).where(other.c.key == key)).scalar():
                return
        if change.action == INSERT:
            tx.execute(insert(table).values(key=change.key, **change.values))
        elif change.action == UPDATE:
            tx.execute(update(table).where(table.c.key == change.key).values(**change.values))
        else:
            tx.execute(delete(table).where(table.c.key == change.key))


class FollowStore:
    """What the projection worker does with each batch from the topic: set aside what the
    store does not hold, then catch up with the store."""

    def __init__(self, projection: Projection, read_store: StoreReader,
                 store_position: Callable[[], int]):
        self.projection = projection
        self._read_store = read_store
        self._store_position = store_position

    def __call__(self, delivered: Iterable[Envelope] = ()) -> int:
        delivered = list(delivered)
        progress = [e for e in delivered if e.type == PROGRESS]
        self.projection.check_delivered([e for e in delivered if e.type != PROGRESS], self._store_position())
        applied = self.projection.catch_up(self._read_store)
        if progress:  # after the catch-up: the snapshot's row exists by now
            self.projection.apply_progress(progress)
        return applied


def _problem(envelope: Envelope) -> str | None:
    """Why an event cannot go into the views, or None."""
    if envelope.sequence is None:
        return "no sequence"
    try:
        parse_event(envelope)
    except Exception as error:  # noqa: BLE001 - unknown type or data that does not fit
        return f"not a valid {envelope.type}: {error}"[:500]
    too_long = over_limit(envelope.data)
    if too_long:
        return too_long
    if "\\u0000" in envelope.model_dump_json():  # JSON's spelling of a NUL
        return "contains a NUL character, which the view database cannot store"
    return None


def over_limit(data: dict) -> str | None:
    """Which name in an event's data is longer than the views hold, or None."""
    for field, limit in _LIMITS.items():
        if len(str(data.get(field, ""))) > limit:
            return f"{field} longer than {limit} characters"
    return None


def history_row(envelope: Envelope) -> dict:
    """The history view's row of an event (an `Envelope`, or replay's `Published`)."""
    snapshot_name = envelope.data.get("snapshot_name")
    return {"event_id": envelope.id, "sequence": int(envelope.sequence),
            "cluster_key": name_key(str(envelope.data["cluster_name"])),
            "snapshot_key": name_key(snapshot_name) if snapshot_name else None, "type": envelope.type,
            "time": envelope.time, "correlationid": envelope.correlationid, "data": envelope.data,
            "authtype": envelope.authtype, "authid": envelope.authid, "traceparent": envelope.traceparent}
