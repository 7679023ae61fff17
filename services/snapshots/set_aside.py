"""Events set aside: what a part of the service could not process and stepped over rather
than stall on (the relay, for a stored event it cannot translate).

Kept in the view database, in a table of its own (a replay of the views never drops it), so
that the API's `/health` shows them whatever process set them aside. How to recover one is
in the README ("Set-aside events")."""

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Column, DateTime, Engine, Integer, MetaData, String, Table,
                        Text, delete, func, insert, select)

from services.snapshots.views import create_tables

metadata = MetaData()

set_aside = Table(
    "set_aside_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("part", String(32), nullable=False),  # who set it aside: "relay", ...
    Column("position", BigInteger, nullable=False),  # its notification id (sequence)
    Column("event_type", String(256), nullable=False),
    Column("error", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
)


class SetAsideLog:
    def __init__(self, engine: Engine):
        self._engine = engine
        create_tables(metadata, engine)

    def record(self, part: str, position: int, event_type: str, error: str) -> None:
        with self._engine.begin() as tx:
            tx.execute(insert(set_aside).values(part=part, position=position,
                                                event_type=event_type[:256], error=error[:2000],
                                                time=datetime.now(timezone.utc)))

    def count(self) -> int:
        with self._engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(set_aside)).scalar_one()

    def latest(self, limit: int = 20) -> list[dict]:
        query = select(set_aside).order_by(set_aside.c.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [{**row, "time": row["time"].isoformat()} for row in connection.execute(query).mappings()]

    def clear(self, part: str) -> None:
        with self._engine.begin() as tx:
            tx.execute(delete(set_aside).where(set_aside.c.part == part))
