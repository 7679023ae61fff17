"""The `postgres` driver against the PostgreSQL 15 server on this machine."""

import time

import psycopg
import pytest
from psycopg import errors

from services.snapshots.drivers import DriverError
from services.snapshots.drivers.postgres import FREEZE_SCHEMA, PostgresDriver
from tests.conftest import POSTGRES, postgres_dsn
from tests.integration.postgres_warehouse import catalog_state, create_sample_tables, insert, pg_dump_sessions

TABLES = ("customers", "orders")


@pytest.fixture
def cluster(postgres_database):
    return create_sample_tables(postgres_dsn(postgres_database))


@pytest.fixture
def restored_databases():
    names = []
    yield names
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_rows(target) -> dict:
    with psycopg.connect(target) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}


def test_writes_fail_from_new_and_already_open_sessions_while_frozen(cluster):
    already_open = psycopg.connect(cluster, autocommit=True)
    frozen = PostgresDriver().freeze(cluster)
    try:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            insert(already_open)
        with psycopg.connect(cluster, autocommit=True) as new_session:
            with pytest.raises(errors.ReadOnlySqlTransaction):
                insert(new_session)
            with pytest.raises(errors.ReadOnlySqlTransaction):
                new_session.execute("BEGIN READ WRITE")
                new_session.execute("UPDATE orders SET qty = 0")
            new_session.execute("ROLLBACK")
            with pytest.raises(errors.ReadOnlySqlTransaction):
                new_session.execute("TRUNCATE orders")
            assert new_session.execute("SELECT count(*) FROM orders").fetchone() == (500,)
    finally:
        frozen.release()
    insert(already_open)
    already_open.close()


def test_release_and_cleanup_leave_the_database_writable_and_unchanged(cluster):
    before = catalog_state(cluster)
    frozen = PostgresDriver().freeze(cluster)
    frozen.release()
    frozen.cleanup()
    with psycopg.connect(cluster, autocommit=True) as db:
        insert(db)
    assert catalog_state(cluster) == before
    assert (FREEZE_SCHEMA,) not in before[1]


def test_freezing_twice_is_harmless_so_a_resumed_workflow_can_freeze_again(cluster):
    PostgresDriver().freeze(cluster)  # a worker that died while frozen
    PostgresDriver().freeze(cluster).release()
    with psycopg.connect(cluster, autocommit=True) as db:
        insert(db)


def test_the_snapshot_is_a_dump_with_a_verifiable_manifest(cluster, tmp_path):
    frozen = PostgresDriver().freeze(cluster)
    try:
        files = frozen.copy_to(tmp_path / "nightly-01")
    finally:
        frozen.release()
    manifest = (files.directory / "manifest.json").read_text()
    assert files.size_bytes == (files.directory / "database.pgdump").stat().st_size > 0
    assert files.sha256 in manifest and '"server_version": "15.' in manifest
    assert '"public.orders": 500' in manifest and '"public.customers": 100' in manifest


def test_a_restore_holds_exactly_the_rows_at_snapshot_time(cluster, tmp_path, restored_databases):
    at_snapshot = table_rows(cluster)
    driver = PostgresDriver()
    frozen = driver.freeze(cluster)
    with psycopg.connect(cluster, autocommit=True) as writer:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            insert(writer)
        files = frozen.copy_to(tmp_path / "nightly-01")
        frozen.release()
        insert(writer)  # after the snapshot: must not appear in the restore
    restored_databases.append("dws-restored-1")
    target = driver.restore(files.directory, cluster, "dws-restored-1", files.sha256)
    assert target.endswith("/dws-restored-1")
    assert table_rows(target) == at_snapshot != table_rows(cluster)
    with psycopg.connect(target) as db:
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)


def test_a_dump_that_does_not_match_its_manifest_is_not_restored(cluster, tmp_path, restored_databases):
    driver = PostgresDriver()
    frozen = driver.freeze(cluster)
    files = frozen.copy_to(tmp_path / "nightly-01")
    frozen.release()
    with open(files.directory / "database.pgdump", "ab") as dump:
        dump.write(b"garbage")
    restored_databases.append("dws-restored-2")
    with pytest.raises(DriverError, match="do not match the manifest"):
        driver.restore(files.directory, cluster, "dws-restored-2", files.sha256)


def test_many_deleted_rows_give_a_warning_that_names_the_table_and_the_vacuum(cluster, tmp_path):
    with psycopg.connect(cluster, autocommit=True) as db:
        db.execute("CREATE TABLE events (id serial PRIMARY KEY, body text) WITH (autovacuum_enabled = false)")
        db.execute("INSERT INTO events (body) SELECT repeat('x', 100) FROM generate_series(1, 5000)")
        db.execute("DELETE FROM events WHERE id > 1000")
        db.execute("SELECT pg_stat_force_next_flush()")
        db.execute("SELECT 1")
        for _ in range(50):
            dead = db.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'events'").fetchone()
            if dead and dead[0] >= 4000:
                break
            time.sleep(0.1)
    frozen = PostgresDriver().freeze(cluster)
    try:
        files = frozen.copy_to(tmp_path / "bloated")
    finally:
        frozen.release()
    assert files.warning and "public.events" in files.warning and "VACUUM FULL public.events" in files.warning
    assert "public.orders" not in files.warning


def test_an_unreachable_database_is_a_driver_error():
    with pytest.raises(DriverError, match="cannot connect"):
        PostgresDriver().freeze("postgresql://postgres@127.0.0.1:1/nowhere")


def test_a_dump_that_hangs_is_killed_at_the_timeout_and_reported(cluster, tmp_path):
    driver = PostgresDriver(tool_timeout_seconds=2)
    frozen = driver.freeze(cluster)
    blocker = psycopg.connect(cluster)
    try:
        blocker.execute("CREATE TABLE late (id int)")  # DDL is not blocked (a documented limit)
        blocker.commit()
        blocker.execute("LOCK TABLE late IN ACCESS EXCLUSIVE MODE")  # pg_dump now waits forever
        started = time.monotonic()
        with pytest.raises(DriverError, match="timed out after 2 s"):
            frozen.copy_to(tmp_path / "hung")
        assert time.monotonic() - started < 10
        assert not (tmp_path / "hung" / "database.pgdump").exists()
        assert pg_dump_sessions(cluster) == 0  # not left waiting for the lock on the server either
    finally:
        blocker.rollback()
        blocker.close()
        frozen.release()
    with psycopg.connect(cluster, autocommit=True) as db:
        insert(db)


def test_a_writer_holding_its_transaction_open_makes_the_freeze_fail_not_hang(cluster):
    writer = psycopg.connect(cluster)
    writer.execute("INSERT INTO customers (name) VALUES ('in flight')")  # transaction left open
    try:
        with pytest.raises(DriverError, match="cannot make .* read-only"):
            PostgresDriver(lock_timeout_seconds=0.5).freeze(cluster)
    finally:
        writer.rollback()
        writer.close()
    with psycopg.connect(cluster) as db:
        assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (FREEZE_SCHEMA,)).fetchone() == (0,)
