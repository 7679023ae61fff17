"""Writing replay's folded rows: the live views replaced in one transaction (readers see
the old views or the new ones, never a mix), each table written in bulk: one executemany
on SQLite, COPY on PostgreSQL. Values go through the same SQLAlchemy type processing as
the live projection's inserts, so the stored rows are the same."""

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, Table, delete
from sqlalchemy.schema import CreateIndex, DropIndex

from services.snapshots.fold import Fold
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
    dialect, names, columns = tx.dialect, [column.name for column in table.c], []
    rows = list(rows)
    if not rows:
        return
    for column in table.c:  # column by column: one map() each, the bulk of the Python work
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        values = [row.get(column.name) for row in rows]
        columns.append(list(map(process, values)) if process else values)
    values = list(zip(*columns))
    quoted = ", ".join(f'"{name}"' for name in names)
    if dialect.name == "postgresql":
        with tx.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in values:
                    copy.write_row(row)
    else:
        # The secondary indexes are built once after the rows, by sorting, rather than row
        # by row; a larger page cache keeps the b-trees in memory (this connection only).
        marks = ", ".join("?" for _ in names)
        tx.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
        try:
            for index in table.indexes:
                tx.execute(DropIndex(index))
            tx.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', values)
            for index in table.indexes:
                tx.execute(CreateIndex(index))
        finally:
            tx.exec_driver_sql(f"PRAGMA cache_size={-SQLITE_DEFAULT_CACHE_KIB}")
