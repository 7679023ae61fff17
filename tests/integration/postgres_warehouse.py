"""Real PostgreSQL warehouses and sessions for the `postgres` driver's tests."""

import threading
import time

import psycopg

from tests.conftest import POSTGRES


def create_sample_tables(target: str) -> str:
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)")
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, qty int)")
        db.execute("INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 100) g")
        db.execute("INSERT INTO orders (customer_id, qty) SELECT 1 + g % 100, g FROM generate_series(1, 500) g")
    return target


def insert(connection, prepare: bool | None = None) -> None:
    connection.execute("INSERT INTO customers (name) VALUES (%s)", ("late",), prepare=prepare)


def catalog_state(target) -> tuple:
    with psycopg.connect(target) as db:
        return (db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone(),
                db.execute("SELECT nspname FROM pg_namespace ORDER BY 1").fetchall(),
                db.execute("SELECT setconfig FROM pg_db_role_setting").fetchall())


def impatient_session(target: str) -> psycopg.Connection:
    """A session that fails instead of waiting: any wait on a lock shows as an error."""
    connection = psycopg.connect(target, autocommit=True)
    connection.execute("SET statement_timeout = '1s'")
    return connection


def pg_dump_sessions(target: str, settle_seconds: float = 2.0) -> int:
    """How many pg_dump sessions the server still runs on the target's database, once the
    ones already ending had `settle_seconds` to go."""
    deadline = time.monotonic() + settle_seconds
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        while True:
            count = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                  "AND application_name = 'pg_dump'", (target.rsplit("/", 1)[1],)).fetchone()[0]
            if count == 0 or time.monotonic() > deadline:
                return count
            time.sleep(0.05)


class LongReader:
    """Another session running an analytic query: its transaction has read `customers`
    (so it holds ACCESS SHARE on it) and now runs `pg_sleep` for `seconds` or until
    stopped, then ends."""

    def __init__(self, target: str, seconds: float = 30):
        self._target = target
        self._seconds = seconds

    def __enter__(self) -> "LongReader":
        self._connection = psycopg.connect(self._target)
        self._connection.execute("SELECT count(*) FROM customers").fetchone()
        self.pid = self._connection.info.backend_pid
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._wait_until_sleeping()
        return self

    def _read(self) -> None:
        try:
            self._connection.execute("SELECT pg_sleep(%s)", (self._seconds,))
        except psycopg.errors.QueryCanceled:
            pass  # stopped by `stop`
        finally:
            self._connection.rollback()  # the query is over: so is its hold on the table

    def _wait_until_sleeping(self) -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
            for _ in range(100):
                if admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s",
                                 (self.pid, "%pg_sleep%")).fetchone():
                    return
                time.sleep(0.02)
        raise AssertionError("the long reader never started")

    def stop(self) -> None:
        if self._thread.is_alive():
            with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
                admin.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
        self._thread.join(10)
        self._connection.close()

    def __exit__(self, *exc) -> None:
        if not self._connection.closed:
            self.stop()
