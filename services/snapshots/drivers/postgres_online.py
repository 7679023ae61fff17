"""Online snapshots of a PostgreSQL database: read-only only until `pg_dump` has its snapshot.

Under the freeze (no write can commit: see `postgres_freeze`), a connection of its own
begins a REPEATABLE READ transaction and exports its snapshot (`pg_export_snapshot()`), so
that snapshot is exactly the database as of the freeze. `pg_dump --snapshot=<id>` imports
it and takes an ACCESS SHARE lock on every table it dumps; once it holds all of them
(`pg_locks`, seen from the freeze's own autocommit connection: `pg_stat_activity` is read
once per transaction, so the exporting transaction cannot poll it), `pinned()` is called:
the caller releases the freeze (a lock-free swap of the trigger function, which never
waits behind the dump's locks) while the dump goes on. The exporting transaction stays
open to the end: the manifest's row counts are counted in the same snapshot.

The freeze's triggers are left in place (pass-through) until the copy ends: dropping one
needs ACCESS EXCLUSIVE, which would wait behind the dump's locks and make writers queue
behind it. `pg_dump` runs with `application_name` set to a name of this copy alone, so its
backend is found among others; it dies with the service (PR_SET_PDEATHSIG). Its output goes
to a file (the local repository) or, through its stdout, to a streaming repository (S3):
the same wait for the locks (`LockWatch`) either way."""

import threading
import uuid
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

from services.snapshots.drivers.base import DriverError
from services.snapshots.drivers.tools import POLL_SECONDS, stream_tool, tool_environment

#: The tables `pg_dump` locks: ordinary and partitioned tables outside the system schemas,
#: the freeze's schema (excluded from the dump) and extensions (not dumped as tables).
DUMPED_TABLES = """SELECT coalesce(array_agg(c.oid::bigint), '{}') FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p')
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
                     AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                     AND d.objid = c.oid AND d.deptype = 'e')"""

#: How many of them the backend of this dump holds ACCESS SHARE locks on.
LOCKS_HELD = """SELECT count(DISTINCT l.relation) FROM pg_locks l
                JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE a.application_name = %s AND l.locktype = 'relation' AND l.granted
                  AND l.mode = 'AccessShareLock' AND l.relation::bigint = ANY(%s)"""


class SnapshotExport:
    """A REPEATABLE READ transaction whose snapshot was exported: open it while frozen."""

    def __init__(self, connection: psycopg.Connection, exclude_schema: str):
        self.connection = connection
        try:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.snapshot_id = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
            self.tables = connection.execute(DUMPED_TABLES, (exclude_schema,)).fetchone()[0]
        except psycopg.Error as error:
            connection.close()
            raise DriverError(f"cannot export a snapshot of the database: {error}") from error

    def close(self) -> None:
        self.connection.close()  # ends the transaction (nothing was written)


def dump_online(args: list[str], password: str | None, timeout: float, export: SnapshotExport,
                poll: psycopg.Connection, pinned: Callable[[], None],
                cancel: threading.Event | None, on_poll: Callable[[], None] | None,
                write: Callable[[bytes], None] | None = None) -> None:
    """Run `pg_dump` on the exported snapshot; `pinned()` once it holds every table's lock.
    Its output goes to the file its `args` name, or, with `write`, block by block to
    `write` as it is produced (a streaming repository). If the dump ends first (or the
    locks cannot be seen) `pinned` is not called: the caller releases after the copy, as
    an offline snapshot does."""
    application_name = f"dws-snapshot-{uuid.uuid4().hex[:12]}"
    env = tool_environment(password)
    # In the connection string, not PGAPPNAME: a target's own application_name would win.
    args = [f"--dbname={make_conninfo(a[len('--dbname='):], application_name=application_name)}"
            if a.startswith("--dbname=") else a for a in args]
    watch = LockWatch(poll, application_name, export.tables, pinned)

    def polled() -> None:
        watch.check()
        if on_poll is not None:
            on_poll()

    stream_tool([*args, f"--snapshot={export.snapshot_id}"], env, timeout, write or _no_output,
                cancel, polled, lambda: POLL_SECONDS if watch.done else POLL_SECONDS / 10)


class LockWatch:
    """The one definition of "pg_dump holds its locks": `check()` (called while the dump
    runs) calls `pinned()` once, the first time the dump's backend holds an ACCESS SHARE
    lock on every table it dumps."""

    def __init__(self, poll: psycopg.Connection, application_name: str, tables: list[int],
                 pinned: Callable[[], None]):
        self._poll, self._application_name, self._tables = poll, application_name, tables
        self._pinned = pinned
        self.done = False

    def check(self) -> None:
        if self.done:
            return
        try:
            held = self._poll.execute(LOCKS_HELD, (self._application_name, self._tables)).fetchone()[0]
        except psycopg.Error as error:
            raise DriverError(f"cannot see the dump's locks: {error}") from error
        if held >= len(self._tables):
            self.done = True
            self._pinned()


def _no_output(block: bytes) -> None:
    raise DriverError(f"pg_dump wrote {len(block)} bytes to its output instead of its file")
