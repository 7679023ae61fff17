"""The `postgres` driver: a cluster is a PostgreSQL database (DWS and Redshift speak the
same protocol).

Read-only is enforced inside the database, for every session, old or new: the driver
creates the schema `_dws_snapshot_freeze` with a function that raises SQLSTATE 25006
(read_only_sql_transaction), and a statement trigger calling it BEFORE INSERT, UPDATE,
DELETE and TRUNCATE on every table. `BEGIN READ WRITE` cannot get round a trigger.
Release is `DROP SCHEMA _dws_snapshot_freeze CASCADE`, which takes every trigger with it,
so nothing of the database is left changed. Freezing is idempotent (CREATE OR REPLACE),
so a workflow resumed after a crash freezes and releases again.

Limits: a superuser (session_replication_role = replica) or a table owner
(ALTER TABLE ... DISABLE TRIGGER) can still write on purpose; DDL is not blocked; a
freeze waits at most `lock_timeout` for writers already inside a transaction.

The snapshot is `pg_dump --format=custom` (its own consistent MVCC snapshot) with a
manifest; restore is `CREATE DATABASE` + `pg_restore` without the freeze triggers.
Passwords never appear in targets: they come from the service's settings (PGPASSWORD
given to pg_dump's environment only) or libpq's PGPASSFILE."""

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from services.snapshots.drivers.base import DriverError, SnapshotFiles, verify_manifest, write_manifest

FREEZE_SCHEMA = "_dws_snapshot_freeze"
DEAD_ROW_SHARE = 0.2  # warn when dead rows are at least this share of a table's rows
DEAD_ROW_MINIMUM = 1000  # ... and at least this many

FREEZE = f"""
CREATE SCHEMA IF NOT EXISTS {FREEZE_SCHEMA};
CREATE OR REPLACE FUNCTION {FREEZE_SCHEMA}.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'cluster is read-only: a snapshot is being created' USING ERRCODE = '25006';
END $$;
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.oid::regclass AS rel FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '{FREEZE_SCHEMA}')
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER {FREEZE_SCHEMA} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE '
                   'ON %s FOR EACH STATEMENT EXECUTE FUNCTION {FREEZE_SCHEMA}.refuse_write()', t.rel);
  END LOOP;
END $$;
"""

TABLES = """SELECT format('%%I.%%I', schemaname, relname), n_live_tup, n_dead_tup
            FROM pg_stat_user_tables WHERE schemaname <> %s ORDER BY 1"""


class FrozenPostgres:
    def __init__(self, driver: "PostgresDriver", target: str, connection: psycopg.Connection):
        self._driver = driver
        self._target = target
        self._connection = connection

    def copy_to(self, directory: Path) -> SnapshotFiles:
        directory.mkdir(parents=True, exist_ok=True)
        dump = directory / "database.pgdump"
        self._driver.run_tool(["pg_dump", "--format=custom", "--no-password",
                               f"--exclude-schema={FREEZE_SCHEMA}", f"--file={dump}",
                               f"--dbname={self._target}"], self._target)
        try:
            version = self._connection.execute("SHOW server_version").fetchone()[0]
            tables = self._connection.execute(TABLES, (FREEZE_SCHEMA,)).fetchall()
            counts = {name: self._connection.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(name))).fetchone()[0]
                for name, _, _ in tables}
        except psycopg.Error as error:
            raise DriverError(f"cannot read the database's statistics: {error}") from error
        files = write_manifest(directory, dump, driver="postgres", server_version=version,
                               row_counts=counts)
        return SnapshotFiles(files.directory, files.size_bytes, files.sha256, dead_row_warning(tables))

    def release(self) -> None:
        """Drop the freeze. Waits for running queries (no lock timeout): a release that
        gave up would leave the cluster read-only."""
        try:
            with self._driver.connect(self._target, autocommit=True) as connection:
                connection.execute("SET lock_timeout = 0")
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(FREEZE_SCHEMA)))
        except psycopg.Error as error:
            raise DriverError(f"cannot lift read-only on {self._target}: {error}") from error
        finally:
            self._connection.close()


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
    name = "postgres"

    def __init__(self, passwords: Mapping[str, str] | None = None, lock_timeout_seconds: float = 10.0,
                 tool_timeout_seconds: float = 3600.0):
        self._passwords = dict(passwords or {})
        self._lock_timeout = lock_timeout_seconds
        self._tool_timeout = tool_timeout_seconds

    def connect(self, target: str, **kwargs) -> psycopg.Connection:
        password = self._passwords.get(target)
        try:
            return psycopg.connect(target, **({"password": password} if password else {}), **kwargs)
        except psycopg.Error as error:
            raise DriverError(f"cannot connect to {target}: {error}") from error

    def freeze(self, target: str) -> FrozenPostgres:
        connection = self.connect(target, autocommit=True)
        try:
            connection.execute(f"SET lock_timeout = '{int(self._lock_timeout * 1000)}ms'")
            with connection.transaction():
                connection.execute(FREEZE)
        except psycopg.Error as error:
            connection.close()
            raise DriverError(f"cannot make {target} read-only: {error}") from error
        return FrozenPostgres(self, target, connection)

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        dump = verify_manifest(directory, expected_sha256)
        database = new_cluster_name.lower()
        target = urlunsplit(urlsplit(source_target)._replace(path="/" + database))
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

    def run_tool(self, args: list[str], password_of: str) -> str:
        env = dict(os.environ)
        if password := self._passwords.get(password_of):
            env["PGPASSWORD"] = password  # the child's environment only, never its arguments
        try:  # on timeout the child is killed, so a hung dump cannot outlive the snapshot
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=self._tool_timeout)
        except subprocess.TimeoutExpired:
            raise DriverError(f"{args[0]} timed out after {self._tool_timeout:g} s") from None
        except OSError as error:
            raise DriverError(f"{args[0]} could not run: {error}") from error
        if done.returncode != 0:
            raise DriverError(f"{args[0]} failed: {done.stderr.strip()[-500:]}")
        return done.stdout
