"""Writing replay's folded rows: the live views replaced in one transaction (readers see
the old views or the new ones, never a mix), each table written in bulk: one executemany
on SQLite (values through the same SQLAlchemy type processing as the live projection's
inserts), COPY on PostgreSQL (values spelt as psycopg sends them), so the stored rows are
the same."""

import json
from collections.abc import Iterable
from operator import itemgetter

from sqlalchemy import JSON, Connection, DateTime, Engine, String, Table, Text, delete
from sqlalchemy.schema import CreateIndex, DropIndex

from services.snapshots.fold import OMITTED, Fold
from services.snapshots.projection import POSITION
from services.snapshots.views import ViewTables

SQLITE_CACHE_KIB = 256 * 1024
SQLITE_DEFAULT_CACHE_KIB = 2000


def write(engine: Engine, tables: ViewTables, fold: Fold) -> None:
    rows = {tables.snapshots: fold.tables["snapshots"].values(),
            tables.clusters: fold.tables["clusters"].values(), tables.history: fold.history,
            # The live projection writes its position with its first batch: none for an empty log.
            tables.position: [{"name": POSITION, "position": fold.position}] if fold.position else []}
    with engine.begin() as tx:
        for table in tables.all():
            tx.execute(delete(table))
        for table, table_rows in rows.items():
            _insert(tx, table, table_rows)


def _insert(tx: Connection, table: Table, rows: Iterable[dict]) -> None:
    rows = list(rows)
    if not rows:
        return
    quoted = ", ".join(f'"{column.name}"' for column in table.c)
    if tx.dialect.name == "postgresql":
        with tx.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for start in range(0, len(rows), 10_000):
                    copy.write(_copy_text(table, rows[start:start + 10_000]))
        return
    columns = []
    for column, values in zip(table.c, _columns(table, rows)):  # one map() per column
        process = column.type.dialect_impl(tx.dialect).bind_processor(tx.dialect)
        if OMITTED in values:
            columns.append([None if v is OMITTED else process(v) if process else v for v in values])
        else:
            columns.append(list(map(process, values)) if process else values)
    # The secondary indexes are built once after the rows, by sorting, rather than row by
    # row; a larger page cache keeps the b-trees in memory (this connection only).
    marks = ", ".join("?" for _ in table.c)
    tx.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
    try:
        for index in table.indexes:
            tx.execute(DropIndex(index))
        tx.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', list(zip(*columns)))
        for index in table.indexes:
            tx.execute(CreateIndex(index))
    finally:
        tx.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_DEFAULT_CACHE_KIB}")


#: COPY's text format: these characters of a value are written as escapes.
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _columns(table: Table, rows: list[dict]) -> list[tuple]:
    """The rows' values column by column (a column a row lacks: NULL, as in an INSERT)."""
    names = [column.name for column in table.c]
    try:
        values = list(map(itemgetter(*names), rows))
    except KeyError:
        values = [tuple(row.get(name, OMITTED) for name in names) for row in rows]
    return list(zip(*values))


def _needs_escapes(text: str) -> bool:
    return "\\" in text or "\n" in text or "\r" in text or "\t" in text


def _copy_text(table: Table, rows: list[dict]) -> str:
    """Rows in COPY's text format, each value as the live projection's insert sends it:
    JSON as `json.dumps` writes it (psycopg's Json), a timestamp in ISO 8601 with its
    offset, NULL as \\N."""
    columns = []
    for column, values in zip(table.c, _columns(table, rows)):
        if isinstance(column.type, JSON):  # a None given is JSON's null, as SQLAlchemy sends it
            text = [None if v is OMITTED else json.dumps(v) for v in values]
        elif isinstance(column.type, DateTime):
            text = [None if v is None or v is OMITTED else v.isoformat() for v in values]
        elif isinstance(column.type, (String, Text)):
            text = [None if v is None or v is OMITTED else str(v) for v in values]
        else:
            text = [None if v is None or v is OMITTED else str(int(v)) for v in values]
        present = [v for v in text if v is not None]
        if _needs_escapes("".join(present)):  # one scan of the column, mostly
            text = [None if v is None else v.translate(_ESCAPES) for v in text]
        columns.append(["\\N" if v is None else v for v in text] if len(present) < len(text) else text)
    return "".join("\t".join(row) + "\n" for row in zip(*columns))
