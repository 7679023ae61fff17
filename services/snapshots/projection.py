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
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from events.codec import parse_event
from events.envelope import Envelope
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots import logs
from services.snapshots.set_aside import SetAsideLog
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
        self._handlers: dict[str, Callable] = {
            "ClusterRegistered": self._when_cluster_registered,
            "ClusterStatusChanged": self._when_cluster_status_changes,
            "ClusterLocked": self._when_cluster_status_changes,
            "ClusterReadOnly": self._when_cluster_status_changes,
            "ClusterUnlocked": self._when_cluster_status_changes,
            "SnapshotStarted": self._when_snapshot_started,
            "SnapshotCompleted": self._when_snapshot_completed,
            "SnapshotFailed": self._when_snapshot_failed,
            "SnapshotDeleted": self._when_snapshot_deleted,
            "SnapshotCancelled": self._when_snapshot_cancelled,
            "RestoreStarted": self._when_snapshot_status_is(SnapshotStatus.RESTORING),
            "RestoreCompleted": self._when_snapshot_status_is(SnapshotStatus.AVAILABLE),
            "RestoreFailed": self._when_snapshot_status_is(SnapshotStatus.AVAILABLE),
            "SnapshotPolicySet": self._when_policy_changes,
            "SnapshotPolicyRemoved": self._when_policy_changes,
        }

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
            rows.append(_history_row(envelope))
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

    def _when_cluster_registered(self, tx, data, envelope) -> None:
        tx.execute(insert(self._tables.clusters).values(
            key=name_key(data["cluster_name"]), name=data["cluster_name"], status=data["status"],
            task_status=None, driver=data["driver"], target=data["target"]))

    def _when_cluster_status_changes(self, tx, data, envelope) -> None:
        values = {"status": data["status"]}
        if "task_status" in data:  # set by ClusterLocked, cleared by ClusterUnlocked
            values["task_status"] = data["task_status"]
        clusters = self._tables.clusters
        tx.execute(update(clusters).where(clusters.c.key == name_key(data["cluster_name"])).values(**values))

    def _when_policy_changes(self, tx, data, envelope) -> None:
        policy = {"schedule": data["schedule"], "keep_days": data["keep_days"]} if "schedule" in data else None
        clusters = self._tables.clusters
        tx.execute(update(clusters).where(clusters.c.key == name_key(data["cluster_name"])).values(policy=policy))

    def _when_snapshot_started(self, tx, data, envelope) -> None:
        tx.execute(insert(self._tables.snapshots).values(
            key=name_key(data["snapshot_name"]), name=data["snapshot_name"],
            cluster_name=data["cluster_name"], status=SnapshotStatus.CREATING,
            snapshot_type=data["snapshot_type"], description=data["description"],
            started_at=envelope.time, sequence=int(envelope.sequence),
            retention_days=data.get("retention_days", -1), online=data.get("online", False)))

    def _when_snapshot_completed(self, tx, data, envelope) -> None:
        self._update_snapshot(tx, data, status=SnapshotStatus.AVAILABLE, size_bytes=data["size_bytes"],
                              started_at=datetime.fromisoformat(data["started_at"]),
                              finished_at=datetime.fromisoformat(data["finished_at"]),
                              warning=data.get("warning"), repository=data.get("repository", "local"),
                              progress=None)
        self._end_online_task(tx, data)

    def _when_snapshot_failed(self, tx, data, envelope) -> None:
        self._update_snapshot(tx, data, status=SnapshotStatus.FAILED, failure_reason=data["reason"],
                              finished_at=envelope.time, progress=None)
        self._end_online_task(tx, data)

    def _when_snapshot_cancelled(self, tx, data, envelope) -> None:
        self._update_snapshot(tx, data, status=SnapshotStatus.CANCELLED, failure_reason=data["reason"],
                              finished_at=envelope.time, progress=None)
        self._end_online_task(tx, data)

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

    def _end_online_task(self, tx, data) -> None:
        """An online snapshot's outcome comes after its ClusterUnlocked: it ends the task."""
        snapshots, clusters = self._tables.snapshots, self._tables.clusters
        online = tx.execute(select(snapshots.c.online).where(
            snapshots.c.key == name_key(data["snapshot_name"]))).scalar()
        if online:
            tx.execute(update(clusters).where(clusters.c.key == name_key(data["cluster_name"]))
                       .values(task_status=None))

    def _when_snapshot_deleted(self, tx, data, envelope) -> None:
        snapshots = self._tables.snapshots
        tx.execute(delete(snapshots).where(snapshots.c.key == name_key(data["snapshot_name"])))

    def _when_snapshot_status_is(self, status: str) -> Callable:
        def handler(tx, data, envelope) -> None:
            self._update_snapshot(tx, data, status=status)
        return handler

    def _update_snapshot(self, tx, data, **values) -> None:
        snapshots = self._tables.snapshots
        tx.execute(update(snapshots).where(snapshots.c.key == name_key(data["snapshot_name"]))
                   .values(**values))


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
    for field, limit in _LIMITS.items():
        if len(str(envelope.data.get(field, ""))) > limit:
            return f"{field} longer than {limit} characters"
    if "\\u0000" in envelope.model_dump_json():  # JSON's spelling of a NUL
        return "contains a NUL character, which the view database cannot store"
    return None


def _history_row(envelope: Envelope) -> dict:
    snapshot_name = envelope.data.get("snapshot_name")
    return {"event_id": envelope.id, "sequence": int(envelope.sequence),
            "cluster_key": name_key(str(envelope.data["cluster_name"])),
            "snapshot_key": name_key(snapshot_name) if snapshot_name else None, "type": envelope.type,
            "time": envelope.time, "correlationid": envelope.correlationid, "data": envelope.data,
            "authtype": envelope.authtype, "authid": envelope.authid, "traceparent": envelope.traceparent}
