"""The `postgres` driver: a cluster is a PostgreSQL database (DWS and Redshift speak the
same protocol).

Read-only is enforced inside the database, for every session, old or new, by a statement
trigger on every table calling `_dws_snapshot_freeze.refuse_write()` (see
`postgres_freeze`). Letting go is two steps:

- `release()` (or `thaw(target)` from any process, after a crash say) swaps the function
  to a pass-through. It takes no table lock, so it returns at once even beside an
  hour-long SELECT, and writes go through from the next statement.
- `cleanup()` (or `cleanup(target)`) then drops the triggers and the schema. Dropping a
  trigger needs ACCESS EXCLUSIVE on its table, so each table waits at most
  `release_lock_timeout_seconds`; tables still held by running queries keep their
  pass-through trigger and `CleanupPending` names them: the database is writable, the
  caller retries later. It is idempotent and never lifts a freeze that came after the
  release.

Freezing is idempotent: a released database keeps its triggers until cleaned up, and a
re-freeze swaps the function back to refusing (tables created since get a trigger).
`is_frozen(target)` tells a reconciler whether writes are refused.

Limits: a superuser (session_replication_role = replica) or a table owner
(ALTER TABLE ... DISABLE TRIGGER) can still write on purpose; DDL is not blocked; a
freeze waits at most `lock_timeout_seconds` for writers already inside a transaction
(readers never hold it up), then fails and leaves the database as it was.

The snapshot is `pg_dump --format=custom` (its own consistent MVCC snapshot) with a
manifest; it runs as a polled child process that a `cancel` event or the tool timeout
stops (the partial dump is removed), and `progress` gets the dump's size so far against
an estimate of its final size: `pg_database_size` at first, refined from the tables pg_dump
has read (`postgres_progress`). Restore is `CREATE DATABASE` + `pg_restore` without the freeze
triggers. Passwords never appear in targets: they come from the service's settings
(PGPASSWORD in the tools' environment only, see `tools`) or libpq's PGPASSFILE."""

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg import sql

from events.vocabulary import name_key
from services.snapshots.drivers import postgres_freeze, postgres_online
from services.snapshots.drivers.postgres_progress import DumpEstimate
from services.snapshots.drivers.base import (CleanupPending, CopyCancelled, DriverError, Progress, SnapshotFiles,
                                             verify_manifest, write_manifest)
from services.snapshots.drivers.tools import run_tool, stream_tool, tool_environment

FREEZE_SCHEMA = postgres_freeze.SCHEMA
DEAD_ROW_SHARE = 0.2  # warn when dead rows are at least this share of a table's rows
DEAD_ROW_MINIMUM = 1000  # ... and at least this many

TABLES = """SELECT format('%%I.%%I', schemaname, relname), n_live_tup, n_dead_tup
            FROM pg_stat_user_tables WHERE schemaname <> %s ORDER BY 1"""


class FrozenPostgres:
    """A database refusing writes, frozen by this process; the connection stays open for
    the statistics of the manifest."""

    def __init__(self, driver: "PostgresDriver", target: str, connection: psycopg.Connection):
        self._driver = driver
        self._target = target
        self._connection = connection

    def copy_to(self, directory: Path, cancel: threading.Event | None = None,
                progress: Progress | None = None) -> SnapshotFiles:
        directory.mkdir(parents=True, exist_ok=True)
        dump = directory / "database.pgdump"
        try:
            self._dump(dump, cancel, progress)
            version, tables, counts = self._statistics(cancel)
        except BaseException:  # a dump without its manifest must never look like a snapshot
            dump.unlink(missing_ok=True)
            raise
        files = write_manifest(directory, dump, driver="postgres", server_version=version,
                               row_counts=counts)
        return SnapshotFiles(files.directory, files.size_bytes, files.sha256, dead_row_warning(tables))

    stream_name = "database.pgdump"

    def stream_to(self, write: Callable[[bytes], None], cancel: threading.Event | None = None,
                  progress: Progress | None = None) -> tuple[dict, str | None]:
        """The dump of `copy_to`, handed to `write` block by block as pg_dump produces it
        (an S3 repository uploads it: no local file); returns the manifest's facts and the
        warning. The caller computes the size and sha256 of what it received."""
        estimate, done = self._estimate() if progress else None, [0]

        def received(block: bytes) -> None:
            write(block)
            done[0] += len(block)

        report = (lambda: progress(done[0], estimate.total(done[0]))) if progress else None
        env = tool_environment(self._driver._passwords.get(self._target))
        try:
            stream_tool(self._dump_args(None), env, self._driver.tool_timeout, received, cancel, report)
        finally:
            if estimate is not None:
                estimate.close()
        if progress:
            progress(done[0], done[0])
        version, tables, counts = self._statistics(cancel)
        return ({"driver": "postgres", "server_version": version, "row_counts": counts},
                dead_row_warning(tables))

    def copy_online(self, directory: Path, cancel: threading.Event | None, pinned: Callable[[], None],
                    progress: Progress | None = None) -> SnapshotFiles:
        """The copy of an online snapshot: `pinned()` is called, from this thread, once the
        dump's snapshot (the database as of the freeze) is taken and the freeze may be
        released; the copy then goes on (see `postgres_online`)."""
        directory.mkdir(parents=True, exist_ok=True)
        dump = directory / "database.pgdump"
        try:
            version, tables, counts = self._online(self._dump_args(dump), None, cancel, pinned, progress,
                                                   lambda: _size_of(dump))
        except BaseException:
            dump.unlink(missing_ok=True)
            raise
        files = write_manifest(directory, dump, driver="postgres", server_version=version,
                               row_counts=counts)
        return SnapshotFiles(files.directory, files.size_bytes, files.sha256, dead_row_warning(tables))

    def stream_online(self, write: Callable[[bytes], None], cancel: threading.Event | None,
                      pinned: Callable[[], None], progress: Progress | None = None) -> tuple[dict, str | None]:
        """`copy_online`, with the dump handed to `write` as pg_dump produces it (as
        `stream_to` does); returns the manifest's facts and the warning."""
        done = [0]

        def received(block: bytes) -> None:
            write(block)
            done[0] += len(block)

        version, tables, counts = self._online(self._dump_args(None), received, cancel, pinned, progress,
                                               lambda: done[0])
        return ({"driver": "postgres", "server_version": version, "row_counts": counts},
                dead_row_warning(tables))

    def _online(self, args: list[str], write: Callable[[bytes], None] | None, cancel: threading.Event | None,
                pinned: Callable[[], None], progress: Progress | None,
                size: Callable[[], int]) -> tuple[str, list, dict]:
        """The online dump (to a file, or streamed to `write`), then its statistics, counted
        in the exported snapshot."""
        export = postgres_online.SnapshotExport(self._driver.connect(self._target), FREEZE_SCHEMA)
        try:
            total = self._database_size(export.connection) if progress else None
            report = (lambda: progress(size(), total)) if progress else None
            postgres_online.dump_online(args, self._driver.password_of(self._target), self._driver.tool_timeout,
                                        export, self._connection, pinned, cancel, report, write)
            statistics = self._statistics(cancel, export.connection)
        finally:
            export.close()
        if progress:
            progress(size(), size())
        return statistics

    def _dump_args(self, dump: Path | None) -> list[str]:
        """pg_dump's arguments: to the file `dump`, or to stdout (None)."""
        compression = [] if self._driver.compression is None else [f"--compress={self._driver.compression}"]
        output = [] if dump is None else [f"--file={dump}"]
        return ["pg_dump", "--format=custom", "--no-password", *compression,
                f"--exclude-schema={FREEZE_SCHEMA}", *output, f"--dbname={self._target}"]

    def _dump(self, dump: Path, cancel: threading.Event | None, progress: Progress | None) -> None:
        estimate = self._estimate() if progress else None

        def report() -> None:
            done = _size_of(dump)
            progress(done, estimate.total(done))
        try:
            self._driver.run_tool(self._dump_args(dump), self._target, cancel, report if progress else None)
        finally:
            if estimate is not None:
                estimate.close()
        if progress:
            size = _size_of(dump)
            progress(size, size)  # done: the total is now known exactly

    def _estimate(self) -> DumpEstimate:
        """The dump's final size as far as it can be told, refined as it goes."""
        return DumpEstimate(lambda: self._driver.connect(self._target, autocommit=True),
                            self._database_size(self._connection), FREEZE_SCHEMA)

    @staticmethod
    def _database_size(connection: psycopg.Connection) -> int | None:
        try:
            return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        except psycopg.Error:
            return None  # only an estimate for progress: not worth failing the snapshot

    def _statistics(self, cancel: threading.Event | None,
                    connection: psycopg.Connection | None = None) -> tuple[str, list, dict]:
        connection = connection or self._connection
        try:
            version = connection.execute("SHOW server_version").fetchone()[0]
            tables = connection.execute(TABLES, (FREEZE_SCHEMA,)).fetchall()
            counts = {}
            for name, _, _ in tables:
                _raise_if_cancelled(cancel)
                counts[name] = connection.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(name))).fetchone()[0]
        except psycopg.Error as error:
            raise DriverError(f"cannot read the database's statistics: {error}") from error
        return version, tables, counts

    def release(self) -> None:
        """Let writes through at once (no table lock); the triggers stay until `cleanup`."""
        try:
            self._driver.thaw(self._target)
        finally:
            self._connection.close()

    def cleanup(self) -> None:
        self._driver.cleanup(self._target)

    def close(self) -> None:
        """Let go of this handle and leave the freeze: it is shared by target, and another
        workflow (the next snapshot's) owns it now."""
        self._connection.close()


def _with_dbname(target: str, database: str) -> str:
    """The target naming another database on the same server, in the target's own form."""
    if target.startswith(("postgresql://", "postgres://")):
        return urlunsplit(urlsplit(target)._replace(path="/" + database))
    return make_conninfo(target, dbname=database)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # the tool has not opened its output yet


def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CopyCancelled("the copy was cancelled")


def dead_row_warning(tables) -> str | None:
    bloated = [(name, live, dead) for name, live, dead in tables
               if dead >= DEAD_ROW_MINIMUM and dead >= DEAD_ROW_SHARE * (live + dead)]
    if not bloated:
        return None
    names = ", ".join(f"{name} ({dead:,} deleted of {live + dead:,} rows)" for name, live, dead in bloated)
    commands = "; ".join(f"VACUUM FULL {name}" for name, _, _ in bloated)
    return (f"deleted rows not yet reclaimed in {names}: the snapshot may be much larger than "
            f"the live data; run {commands}; then take the snapshot again")


class PostgresDriver:
    """Clusters that are PostgreSQL databases, reached by URLs without passwords."""

    name = "postgres"

    def __init__(self, passwords: Mapping[str, str] | None = None, lock_timeout_seconds: float = 10.0,
                 tool_timeout_seconds: float = 3600.0, release_lock_timeout_seconds: float = 2.0,
                 compression: int | None = None):
        self._passwords = dict(passwords or {})
        self._lock_timeout = lock_timeout_seconds
        self.tool_timeout = tool_timeout_seconds
        self._release_lock_timeout = release_lock_timeout_seconds
        #: pg_dump's --compress level (0-9); None: pg_dump's own default.
        self.compression = compression

    def password_of(self, target: str) -> str | None:
        return self._passwords.get(target)

    def connect(self, target: str, **kwargs) -> psycopg.Connection:
        password = self._passwords.get(target)
        try:
            return psycopg.connect(target, **({"password": password} if password else {}), **kwargs)
        except psycopg.Error as error:
            raise DriverError(f"cannot connect to {target}: {error}") from error

    def freeze(self, target: str) -> FrozenPostgres:
        connection = self.connect(target, autocommit=True)
        try:
            postgres_freeze.freeze(connection, self._lock_timeout)
        except psycopg.Error as error:
            connection.close()
            raise DriverError(f"cannot make {target} read-only: {error}") from error
        return FrozenPostgres(self, target, connection)

    def thaw(self, target: str) -> None:
        """Let writes through at once, whoever froze the database; a no-op if it is not frozen."""
        with self.connect(target, autocommit=True) as connection:
            try:
                postgres_freeze.thaw(connection)
            except psycopg.Error as error:
                raise DriverError(f"cannot lift read-only on {target}: {error}") from error

    def cleanup(self, target: str) -> None:
        """Remove the triggers and the schema; CleanupPending while queries hold tables."""
        with self.connect(target, autocommit=True) as connection:
            try:
                pending = postgres_freeze.cleanup(connection, self._release_lock_timeout)
            except psycopg.Error as error:
                raise DriverError(f"cannot remove the freeze triggers of {target}: {error}") from error
        if pending:
            raise CleanupPending(f"{target} is writable, but running queries still hold "
                                 f"{', '.join(pending)}, which keep a pass-through freeze trigger")

    def is_frozen(self, target: str) -> bool:
        with self.connect(target, autocommit=True) as connection:
            try:
                return postgres_freeze.is_frozen(connection)
            except psycopg.Error as error:
                raise DriverError(f"cannot tell whether {target} is read-only: {error}") from error

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        dump = verify_manifest(directory, expected_sha256)
        database = name_key(new_cluster_name)
        target = _with_dbname(source_target, database)
        with self.connect(source_target, autocommit=True) as connection:
            try:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.Error as error:
                raise DriverError(f"cannot create database {database!r}: {error}") from error
        # The new database is on the source's server, as the source's user: same password.
        listing = self.run_tool(["pg_restore", "--list", str(dump)], source_target)
        wanted = "\n".join(line for line in listing.splitlines() if FREEZE_SCHEMA not in line)
        (directory / "restore.list").write_text(wanted)
        self.run_tool(["pg_restore", "--no-owner", "--no-password", "--exit-on-error",
                       f"--use-list={directory / 'restore.list'}", f"--dbname={target}", str(dump)],
                      source_target)
        return target

    def run_tool(self, args: list[str], password_of: str, cancel: threading.Event | None = None,
                 on_poll: Callable[[], None] | None = None) -> str:
        """Run pg_dump or pg_restore with the password of `password_of`, if any, within the tool timeout."""
        env = tool_environment(self._passwords.get(password_of))
        return run_tool(args, env, self.tool_timeout, cancel, on_poll)
