"""How big a running `pg_dump` will be: the estimate behind a PostgreSQL snapshot's progress.

The first estimate is `pg_database_size`. A custom-format dump is compressed and leaves
indexes out, so it ends far smaller than that; the estimate is refined as the dump goes:
PostgreSQL reports the `COPY ... TO STDOUT` that pg_dump runs for each table in
`pg_stat_progress_copy` (rows or bytes sent so far, and which table), so the share of the
tables' data already read is known, and the dump's size so far divided by that share is
the size it is heading for. Tables pg_dump has moved past count as read. The figures are
read at most every `REFRESH_SECONDS`, on a connection of their own; any error leaves the
last estimate (progress never fails a snapshot)."""

import time
from collections.abc import Callable

import psycopg

REFRESH_SECONDS = 0.5
#: Below this share read, the dump says too little about its final size: keep the first estimate.
MINIMUM_SHARE = 0.05

# Rows: the planner's count, or (never analyzed) the statistics' count of live rows.
TABLE_SIZES = """SELECT c.oid, pg_relation_size(c.oid),
                        CASE WHEN c.reltuples > 0 THEN c.reltuples ELSE COALESCE(s.n_live_tup, 0) END
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                 WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname <> %s"""
# The newest pg_dump on this database (an older one may be an orphan of a crashed worker).
DUMPING = """SELECT p.relid, p.tuples_processed, p.bytes_processed
             FROM pg_stat_progress_copy p JOIN pg_stat_activity a ON a.pid = p.pid
             WHERE p.datname = current_database() AND p.command = 'COPY TO'
               AND a.application_name = 'pg_dump'
             ORDER BY a.backend_start DESC LIMIT 1"""


class DumpEstimate:
    def __init__(self, connect: Callable[[], psycopg.Connection], database_size: int | None,
                 skip_schema: str, clock: Callable[[], float] = time.monotonic):
        self._connect = connect
        self._skip_schema = skip_schema
        self._clock = clock
        self._connection: psycopg.Connection | None = None
        self._tables: dict[int, tuple[int, float]] | None = None  # oid -> (bytes, rows)
        self._finished: set[int] = set()
        self._current: int | None = None
        self._share = 0.0
        self._checked = float("-inf")
        self.first = database_size

    def total(self, dump_bytes: int) -> int | None:
        """The final size the dump is heading for, as far as can be told now."""
        if self._clock() - self._checked >= REFRESH_SECONDS:
            self._checked = self._clock()
            try:
                self._refresh()
            except (psycopg.Error, OSError):
                self.close()  # try again with a new connection at the next refresh
        if self._share >= MINIMUM_SHARE and dump_bytes > 0:
            return max(dump_bytes, round(dump_bytes / self._share))
        return self.first

    def _refresh(self) -> None:
        if self._connection is None:
            self._connection = self._connect()
        if self._tables is None:
            rows = self._connection.execute(TABLE_SIZES, (self._skip_schema,)).fetchall()
            self._tables = {oid: (size, tuples) for oid, size, tuples in rows}
        whole = sum(size for size, _ in self._tables.values())
        dumping = self._connection.execute(DUMPING).fetchone()
        if not whole or dumping is None:
            return
        relid, tuples, sent = dumping
        if relid != self._current:
            if self._current is not None:
                self._finished.add(self._current)
            self._current = relid
        size, rows = self._tables.get(relid, (0, 0.0))
        part = min(1.0, tuples / rows) if rows > 0 else min(1.0, sent / size) if size else 0.0
        read = sum(self._tables.get(oid, (0, 0.0))[0] for oid in self._finished) + size * part
        self._share = max(self._share, read / whole)  # never back: the bar only moves on

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
