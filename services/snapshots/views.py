"""The read side: tables of the snapshot list and cluster list, and the queries on them.

Written only by the projection; read by the HTTP API. SQLite file by default, the
PostgreSQL database of the event store when that is configured."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import (JSON, URL, BigInteger, Boolean, Column, DateTime, Engine, MetaData, String,
                        Table, Text, create_engine, func, inspect, select, text)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from events.vocabulary import name_key


@dataclass(frozen=True)
class ViewTables:
    """The tables of one set of views: the live ones, or a replay's set built beside them."""

    metadata: MetaData
    snapshots: Table
    clusters: Table
    history: Table
    position: Table

    def all(self) -> tuple[Table, ...]:
        return (self.snapshots, self.clusters, self.history, self.position)


def define_tables(suffix: str = "") -> ViewTables:
    metadata = MetaData()
    return ViewTables(metadata, Table(
        "view_snapshots" + suffix, metadata,
        Column("key", String(64), primary_key=True),  # name_key(name): names are case-insensitive
        Column("name", String(64), nullable=False),
        Column("cluster_name", String(256), nullable=False, index=True),
        Column("status", String(32), nullable=False, index=True),
        Column("snapshot_type", String(32), nullable=False),
        Column("description", Text, nullable=False),
        Column("size_bytes", BigInteger),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
        Column("failure_reason", Text),
        Column("warning", Text),
        Column("sequence", BigInteger, nullable=False),
        Column("retention_days", BigInteger),  # -1: kept forever (null: a view from before)
        Column("repository", Text),  # where its files are: `local` or s3://bucket/prefix
        Column("online", Boolean),  # an online snapshot: its outcome ends the cluster's task
        # The latest SnapshotProgress of a Creating snapshot (telemetry from the topic,
        # not from the store); cleared by the outcome.
        Column("progress", JSON),
    ), Table(
        "view_clusters" + suffix, metadata,
        Column("key", String(256), primary_key=True),
        Column("name", String(256), nullable=False),
        Column("status", String(32), nullable=False),
        Column("task_status", String(64)),
        Column("driver", String(32), nullable=False),
        Column("target", Text, nullable=False),
        Column("policy", JSON),  # {schedule, keep_days} of SnapshotPolicySet; null: none
    ), Table(
        "view_history" + suffix, metadata,
        Column("event_id", String(64), primary_key=True),
        Column("sequence", BigInteger, nullable=False, index=True),
        Column("cluster_key", String(256), nullable=False, index=True),
        Column("snapshot_key", String(64), index=True),
        Column("type", String(64), nullable=False),
        Column("time", DateTime(timezone=True), nullable=False),
        Column("correlationid", String(256), index=True),
        Column("data", JSON, nullable=False),
        Column("authtype", String(64)),  # the actor of the command that caused the event
        Column("authid", String(256)),
        Column("traceparent", String(128)),
    ), Table(
        # The projection's position in the event store's notification log: every stored
        # event up to it is applied. Written in the same transaction as the views.
        "view_position" + suffix, metadata,
        Column("name", String(32), primary_key=True),
        Column("position", BigInteger, nullable=False),
    ))


LIVE = define_tables()
metadata = LIVE.metadata
snapshots, clusters, history = LIVE.snapshots, LIVE.clusters, LIVE.history

SNAPSHOT_FIELDS = ("name", "cluster_name", "status", "snapshot_type", "description",
                   "size_bytes", "started_at", "finished_at", "failure_reason", "warning",
                   "retention_days", "progress")
CLUSTER_FIELDS = ("name", "status", "task_status", "driver", "target", "policy")


def connect(url: str | URL) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    create_tables(metadata, engine)
    return engine


def create_tables(tables: MetaData, engine: Engine, attempts: int = 5) -> None:
    """CREATE the missing tables. The service, projection and API start together and may
    race to create them: whoever loses sees "already exists" and checks again."""
    for attempt in range(attempts):
        try:
            tables.create_all(engine)
            add_missing_columns(tables, engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise


def add_missing_columns(tables: MetaData, engine: Engine) -> None:
    """Columns added to a table after its creation (nullable, by design) are added to a
    database made by an earlier version: `create_all` only creates missing tables."""
    existing = inspect(engine)
    for table in tables.sorted_tables:
        present = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as tx:
                    tx.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def list_snapshots(engine: Engine, cluster: str | None = None, status: str | None = None,
                   limit: int = 100, offset: int = 0, *, snapshot_type: str | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   name_contains: str | None = None, oldest_first: bool = False) -> tuple[list[dict], int]:
    """A page of the list, newest first (or oldest first) by start, and how many match.
    `since`/`until` bound the start (both included, UTC); `name_contains` is case-insensitive."""
    query = select(*(snapshots.c[f] for f in SNAPSHOT_FIELDS))
    counting = select(func.count()).select_from(snapshots)
    conditions = []
    if cluster is not None:
        # SQL's lower() on the stored spelling: the view keeps no cluster key column.
        conditions.append(func.lower(snapshots.c.cluster_name) == name_key(cluster))
    if status is not None:
        conditions.append(snapshots.c.status == status)
    if snapshot_type is not None:
        conditions.append(snapshots.c.snapshot_type == snapshot_type)
    if since is not None:
        conditions.append(snapshots.c.started_at >= since)
    if until is not None:
        conditions.append(snapshots.c.started_at <= until)
    if name_contains:  # the key is the lower-cased name; % and _ match themselves
        conditions.append(snapshots.c.key.contains(name_key(name_contains), autoescape=True))
    for condition in conditions:
        query, counting = query.where(condition), counting.where(condition)
    order = (snapshots.c.started_at, snapshots.c.sequence)
    query = query.order_by(*(order if oldest_first else (c.desc() for c in order))).limit(limit).offset(offset)
    with engine.connect() as connection:
        rows = [_snapshot(row) for row in connection.execute(query).mappings()]
        return rows, connection.execute(counting).scalar_one()


def get_snapshot(engine: Engine, name: str) -> dict | None:
    """One snapshot, with its repository and its `copies` (from its history)."""
    query = (select(*(snapshots.c[f] for f in SNAPSHOT_FIELDS), snapshots.c.sequence, snapshots.c.repository)
             .where(snapshots.c.key == name_key(name)))
    with engine.connect() as connection:
        row = connection.execute(query).mappings().first()
        if row is None:
            return None
        events = connection.execute(
            select(history.c.type, history.c.data).where(history.c.snapshot_key == name_key(name),
                                                         history.c.sequence >= row["sequence"],
                                                         history.c.type.in_(list(COPY_STATUS)))
            .order_by(history.c.sequence)).all()
    item = _snapshot({k: v for k, v in row.items() if k != "sequence"})
    item["repository"] = item["repository"] or ("local" if item["status"] != "Creating" else None)
    copies: dict[str, dict] = {}
    for kind, data in events:
        copy = {"repository": data["target_repository"], "status": COPY_STATUS[kind]}
        if "size_bytes" in data:
            copy["size_bytes"] = data["size_bytes"]
        if "reason" in data:
            copy["reason"] = data["reason"]
        copies[data["target_repository"]] = copy
    item["copies"] = list(copies.values())
    return item


#: The copy events and the status of the copy each leaves.
COPY_STATUS = {"SnapshotCopyStarted": "Copying", "SnapshotCopied": "Available", "SnapshotCopyFailed": "Failed"}


def snapshot_history(engine: Engine, name: str) -> list[dict]:
    query = (select(history).where(history.c.snapshot_key == name_key(name))
             .order_by(history.c.sequence))
    with engine.connect() as connection:
        return [_event(row) for row in connection.execute(query).mappings()]


def cluster_history(engine: Engine, name: str, limit: int = 1000) -> list[dict]:
    """The cluster's events (its snapshots' included), oldest first, the latest `limit`."""
    query = (select(history).where(history.c.cluster_key == name_key(name))
             .order_by(history.c.sequence.desc()).limit(limit))
    with engine.connect() as connection:
        return [_event(row) for row in reversed(connection.execute(query).mappings().all())]


def command_events(engine: Engine, command_id: str) -> list[dict]:
    """The events a command caused (its `correlationid`), in order."""
    query = select(history).where(history.c.correlationid == command_id).order_by(history.c.sequence)
    with engine.connect() as connection:
        return [_event(row) for row in connection.execute(query).mappings()]


def list_clusters(engine: Engine, status: str | None = None) -> list[dict]:
    query = select(*(clusters.c[f] for f in CLUSTER_FIELDS)).order_by(clusters.c.key)
    if status is not None:
        query = query.where(clusters.c.status == status)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def get_cluster(engine: Engine, name: str) -> dict | None:
    query = select(*(clusters.c[f] for f in CLUSTER_FIELDS)).where(clusters.c.key == name_key(name))
    with engine.connect() as connection:
        row = connection.execute(query).mappings().first()
    return dict(row) if row else None


def _snapshot(row) -> dict:
    item = dict(row)
    retention = item["retention_days"] if item["retention_days"] is not None else -1
    item["retention_days"] = retention
    item["expires_at"] = _iso(_utc(item["started_at"]) + timedelta(days=retention)) \
        if retention > 0 and item["started_at"] else None
    for field in ("started_at", "finished_at"):
        item[field] = _iso(item[field])
    return item


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite keeps no zone; everything is stored in UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def _event(row) -> dict:
    return {"id": row["event_id"], "type": row["type"], "time": _iso(row["time"]),
            "sequence": row["sequence"], "correlationid": row["correlationid"],
            "actor": {"authtype": row["authtype"], "authid": row["authid"]},
            "traceparent": row["traceparent"], "data": row["data"]}
