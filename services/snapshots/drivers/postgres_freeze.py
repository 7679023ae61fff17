"""How the `postgres` driver makes a database refuse writes and lets it go, in SQL.

Everything lives in the schema `_dws_snapshot_freeze`: a function `refuse_write()` and a
statement trigger calling it BEFORE INSERT, UPDATE, DELETE and TRUNCATE on every table.
The database is in one of three states:

- *frozen*: `refuse_write()` raises SQLSTATE 25006 (read_only_sql_transaction). A trigger
  fires for every session, old or new, and `BEGIN READ WRITE` cannot get round it.
- *released*: the same triggers, but `refuse_write()` is a pass-through. Swapping the
  body (CREATE OR REPLACE FUNCTION) takes no table lock: it never waits behind a running
  query, nothing queues behind it, and the next write goes through.
- *clean*: no schema, no triggers, nothing of the database changed. Dropping a trigger
  needs ACCESS EXCLUSIVE on its table, so cleanup runs separately, one table per
  transaction with a short lock timeout; a table kept busy by a running query keeps its
  (pass-through) trigger until a later cleanup gets its turn. The schema goes last.

Freezing creates what is missing (a trigger on each table without one, so a re-freeze of
a released database leaves the catalog alone), swaps the body back to refusing, and
waits, as the first freeze does, for transactions already writing (see
TRIGGER_EVERY_TABLE: the lock it takes never waits for readers). Freeze and
cleanup serialise on a transaction advisory lock, and cleanup drops nothing while the
function refuses: a cleanup retried late can never lift a newer freeze, and it never
freezes anything itself."""

import psycopg
from psycopg import errors, sql

SCHEMA = "_dws_snapshot_freeze"
# Any fixed number: freeze and cleanup of one database take the same advisory lock.
ADVISORY_LOCK = 0x5F647773

REFUSING_BODY = """
BEGIN
  RAISE EXCEPTION 'cluster is read-only: a snapshot is being created' USING ERRCODE = '25006';
END
"""
PASS_THROUGH_BODY = """
BEGIN
  RETURN NULL;  -- a statement trigger's value is ignored: the write goes on
END
"""

# A table without the trigger gets one (CREATE TRIGGER takes SHARE ROW EXCLUSIVE); a table
# that has it is locked in the same mode. Either way the freeze waits for transactions
# already writing to the table: one that holds its lock with prepared statements would
# otherwise go on calling the pass-through it cached, even after the swap to refusing.
# Readers neither block this lock nor queue behind it.
TRIGGER_EVERY_TABLE = f"""
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.oid::regclass AS rel,
                  EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = '{SCHEMA}') AS has_trigger
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '{SCHEMA}')
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  LOOP
    IF t.has_trigger THEN
      EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', t.rel);
    ELSE
      EXECUTE format('CREATE TRIGGER {SCHEMA} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE '
                     'ON %s FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.refuse_write()', t.rel);
    END IF;
  END LOOP;
END $$
"""

# Quoted and qualified by format(%I.%I): safe to splice into DROP TRIGGER.
TRIGGERED_TABLES = """SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_trigger g
                      JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE g.tgname = %s ORDER BY 1"""

REFUSE_BODY_NOW = f"""SELECT p.prosrc <> %s FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = '{SCHEMA}' AND p.proname = 'refuse_write'"""


def _define_function(body: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION {SCHEMA}.refuse_write() RETURNS trigger "
            f"LANGUAGE plpgsql AS $body${body}$body$")


def _set_timeouts(connection: psycopg.Connection, seconds: float, *settings: str) -> None:
    # At least 1 ms: PostgreSQL reads 0 as "no timeout", the opposite of what was meant.
    milliseconds = max(1, round(seconds * 1000))
    for setting in settings:
        connection.execute(f"SET {setting} = {milliseconds}")


def freeze(connection: psycopg.Connection, lock_timeout: float) -> None:
    """Refuse writes from now on; waits at most `lock_timeout` for writers on tables that
    still need their trigger (creating one takes SHARE ROW EXCLUSIVE, which readers do not block)."""
    _set_timeouts(connection, lock_timeout, "lock_timeout")
    with connection.transaction():
        connection.execute(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute(_define_function(REFUSING_BODY))
        connection.execute(TRIGGER_EVERY_TABLE)


def thaw(connection: psycopg.Connection) -> None:
    """Let writes through at once; takes no table lock. Never creates anything."""
    try:
        connection.execute(_define_function(PASS_THROUGH_BODY))
    except errors.InvalidSchemaName:
        pass  # never frozen, or cleaned up already: writable


def is_frozen(connection: psycopg.Connection) -> bool:
    row = connection.execute(REFUSE_BODY_NOW, (PASS_THROUGH_BODY,)).fetchone()
    return bool(row and row[0])


def cleanup(connection: psycopg.Connection, lock_timeout: float) -> list[str]:
    """Drop every trigger, then the schema, unless a freeze is in force. Returns the
    tables whose trigger is still there because running queries kept the table past
    `lock_timeout`: an empty list means done (or left to a newer freeze)."""
    _set_timeouts(connection, lock_timeout, "lock_timeout")
    pending = []
    for (table,) in connection.execute(TRIGGERED_TABLES, (SCHEMA,)).fetchall():
        try:
            if not _drop_trigger(connection, table):
                return []  # a later freeze owns the triggers now; its own cleanup removes them
        except (errors.LockNotAvailable, errors.DeadlockDetected):
            pending.append(table)
    if not pending:
        with connection.transaction():
            if _lock_unless_frozen(connection):
                connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")  # no trigger left to lock
    return pending


def _drop_trigger(connection: psycopg.Connection, table: str) -> bool:
    # One table per transaction: its ACCESS EXCLUSIVE lock is held for a moment, never
    # while waiting for the next table, and a busy table does not hold up the others.
    with connection.transaction():
        if not _lock_unless_frozen(connection):
            return False
        connection.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(SCHEMA), sql.SQL(table)))
    return True


def _lock_unless_frozen(connection: psycopg.Connection) -> bool:
    """Within a transaction: take the freeze's advisory lock; False if a freeze is in force."""
    connection.execute(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})")
    return not is_frozen(connection)
