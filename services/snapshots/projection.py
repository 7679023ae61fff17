"""The projection: status events → the snapshot and cluster views.

Fed by `snapshot.events` in the projection worker, and by the event store in
`snapshotctl replay`; both call `Projection.apply` with the same envelopes. Each event is
applied with its position in one transaction, so a redelivery counts nothing twice."""

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, delete, insert, select, update

from events.envelope import Envelope
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots.views import clusters, history, metadata, positions, snapshots


class Projection:
    def __init__(self, engine: Engine):
        self._engine = engine
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
            "RestoreStarted": self._when_snapshot_status_is(SnapshotStatus.RESTORING),
            "RestoreCompleted": self._when_snapshot_status_is(SnapshotStatus.AVAILABLE),
            "RestoreFailed": self._when_snapshot_status_is(SnapshotStatus.AVAILABLE),
        }

    def apply(self, envelope: Envelope) -> bool:
        """Apply one event; False when it was applied before (or is not ours)."""
        return self.apply_batch([envelope]) == 1

    def apply_batch(self, envelopes) -> int:
        """Apply events in one transaction (replay, or a batch from Kafka); returns how
        many were new. Positions are read once per cluster and written at the end."""
        applied: dict[str, int | None] = {}
        known: dict[str, bool] = {}
        rows: list[dict] = []
        with self._engine.begin() as tx:
            for envelope in envelopes:
                if envelope.sequence is None or "cluster_name" not in envelope.data:
                    continue
                key, sequence = name_key(str(envelope.data["cluster_name"])), int(envelope.sequence)
                if key not in applied:
                    applied[key] = tx.execute(select(positions.c.sequence)
                                              .where(positions.c.cluster_key == key)).scalar()
                    known[key] = applied[key] is not None
                if applied[key] is not None and sequence <= applied[key]:
                    continue
                handler = self._handlers.get(envelope.type)
                if handler is not None:
                    handler(tx, envelope.data, envelope)
                rows.append(_history_row(envelope, key, sequence))
                applied[key] = sequence
            if rows:  # one executemany: most of a replay's rows are history
                tx.execute(insert(history), rows)
            for key, sequence in applied.items():
                if sequence is not None:
                    self._advance(tx, key, sequence, known[key])
        return len(rows)

    def reset(self) -> None:
        metadata.drop_all(self._engine)
        metadata.create_all(self._engine)

    @staticmethod
    def _advance(tx, cluster_key, sequence, existed: bool) -> None:
        if not existed:
            tx.execute(insert(positions).values(cluster_key=cluster_key, sequence=sequence))
        else:
            tx.execute(update(positions).where(positions.c.cluster_key == cluster_key)
                       .values(sequence=sequence))

    @staticmethod
    def _when_cluster_registered(tx, data, envelope) -> None:
        tx.execute(insert(clusters).values(
            key=name_key(data["cluster_name"]), name=data["cluster_name"], status=data["status"],
            task_status=None, driver=data["driver"], target=data["target"]))

    @staticmethod
    def _when_cluster_status_changes(tx, data, envelope) -> None:
        values = {"status": data["status"]}
        if "task_status" in data:  # set by ClusterLocked, cleared by ClusterUnlocked
            values["task_status"] = data["task_status"]
        tx.execute(update(clusters).where(clusters.c.key == name_key(data["cluster_name"]))
                   .values(**values))

    @staticmethod
    def _when_snapshot_started(tx, data, envelope) -> None:
        tx.execute(insert(snapshots).values(
            key=name_key(data["snapshot_name"]), name=data["snapshot_name"],
            cluster_name=data["cluster_name"], status=SnapshotStatus.CREATING,
            snapshot_type=data["snapshot_type"], description=data["description"],
            started_at=envelope.time, sequence=int(envelope.sequence)))

    @staticmethod
    def _when_snapshot_completed(tx, data, envelope) -> None:
        _update_snapshot(tx, data, status=SnapshotStatus.AVAILABLE, size_bytes=data["size_bytes"],
                         started_at=datetime.fromisoformat(data["started_at"]),
                         finished_at=datetime.fromisoformat(data["finished_at"]),
                         warning=data.get("warning"))

    @staticmethod
    def _when_snapshot_failed(tx, data, envelope) -> None:
        _update_snapshot(tx, data, status=SnapshotStatus.FAILED, failure_reason=data["reason"],
                         finished_at=envelope.time)

    @staticmethod
    def _when_snapshot_deleted(tx, data, envelope) -> None:
        tx.execute(delete(snapshots).where(snapshots.c.key == name_key(data["snapshot_name"])))

    @staticmethod
    def _when_snapshot_status_is(status: str) -> Callable:
        def handler(tx, data, envelope) -> None:
            _update_snapshot(tx, data, status=status)
        return handler


def _history_row(envelope: Envelope, cluster_key: str, sequence: int) -> dict:
    snapshot_name = envelope.data.get("snapshot_name")
    return {"event_id": envelope.id, "sequence": sequence, "cluster_key": cluster_key,
            "snapshot_key": name_key(snapshot_name) if snapshot_name else None, "type": envelope.type,
            "time": envelope.time, "correlationid": envelope.correlationid, "data": envelope.data}


def _update_snapshot(tx, data, **values) -> None:
    tx.execute(update(snapshots).where(snapshots.c.key == name_key(data["snapshot_name"]))
               .values(**values))
