"""Letting a frozen PostgreSQL warehouse go without waiting for anyone: release swaps the
freeze off at once beside an hour-long query, cleanup removes the triggers when it gets
its turn, and any process can thaw a database by its target (as after a crash)."""

import time

import psycopg
import pytest
from psycopg import errors

from services.snapshots.drivers import CleanupPending, DriverError
from services.snapshots.drivers.postgres import FREEZE_SCHEMA, PostgresDriver
from tests.conftest import postgres_dsn
from tests.integration.postgres_warehouse import (LongReader, catalog_state, create_sample_tables,
                                                  impatient_session, insert)


@pytest.fixture
def cluster(postgres_database):
    return create_sample_tables(postgres_dsn(postgres_database))


def freeze_triggers(target) -> list[str]:
    with psycopg.connect(target) as db:
        return [name for (name,) in db.execute("SELECT tgrelid::regclass::text FROM pg_trigger "
                                               "WHERE tgname = %s ORDER BY 1", (FREEZE_SCHEMA,))]


def test_release_lets_writes_through_at_once_while_a_long_select_is_running(cluster):
    writer = impatient_session(cluster)
    frozen = PostgresDriver().freeze(cluster)
    with LongReader(cluster, seconds=10):  # a release that waited for it would take 10 s
        with pytest.raises(errors.ReadOnlySqlTransaction):
            insert(writer, prepare=True)  # a prepared statement too must see the release
        started = time.monotonic()
        frozen.release()
        assert time.monotonic() - started < 1.0
        insert(writer, prepare=True)
        with impatient_session(cluster) as new_session:
            insert(new_session)
            assert new_session.execute("SELECT count(*) FROM customers").fetchone() == (102,)
    writer.close()


def test_cleanup_beside_a_long_select_is_pending_and_the_database_stays_writable(cluster):
    driver = PostgresDriver(release_lock_timeout_seconds=0.5)
    frozen = driver.freeze(cluster)
    frozen.release()
    with LongReader(cluster):  # it has read customers, not orders
        started = time.monotonic()
        with pytest.raises(CleanupPending, match="writable.*public.customers"):
            frozen.cleanup()
        assert time.monotonic() - started < 2.0
        with impatient_session(cluster) as writer:
            insert(writer)
            writer.execute("INSERT INTO orders (customer_id, qty) VALUES (1, 1)")
        assert driver.is_frozen(cluster) is False
    assert freeze_triggers(cluster) == ["customers"]  # the idle table was cleaned up already


def test_cleanup_after_the_long_select_ends_leaves_the_catalog_as_before_the_freeze(cluster):
    before = catalog_state(cluster)
    driver = PostgresDriver(release_lock_timeout_seconds=0.5)
    frozen = driver.freeze(cluster)
    frozen.release()
    with LongReader(cluster) as reader:
        with pytest.raises(CleanupPending):
            frozen.cleanup()
        reader.stop()
        frozen.cleanup()
    assert catalog_state(cluster) == before
    driver.cleanup(cluster)  # nothing left: still fine
    assert catalog_state(cluster) == before


def test_a_refreeze_after_a_release_refuses_writes_again_also_on_tables_created_since(cluster):
    driver = PostgresDriver()
    driver.freeze(cluster).release()
    with psycopg.connect(cluster, autocommit=True) as db:
        db.execute("CREATE TABLE late (id int)")
        frozen = driver.freeze(cluster)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            insert(db)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            db.execute("INSERT INTO late VALUES (1)")
        assert driver.is_frozen(cluster) is True
        frozen.release()
        insert(db)
        db.execute("INSERT INTO late VALUES (1)")


def test_a_refreeze_waits_for_a_transaction_already_writing_and_fails_rather_than_let_it_write_on(cluster):
    driver = PostgresDriver(lock_timeout_seconds=0.5)
    driver.freeze(cluster).release()
    writer = psycopg.connect(cluster)
    try:
        for _ in range(6):  # prepared: the session would keep the pass-through it cached
            insert(writer, prepare=True)
        with pytest.raises(DriverError, match="cannot make .* read-only"):
            driver.freeze(cluster)
        assert driver.is_frozen(cluster) is False
    finally:
        writer.rollback()
        writer.close()


def test_a_cleanup_retried_late_never_lifts_a_newer_freeze(cluster):
    driver = PostgresDriver()
    driver.freeze(cluster).release()
    newer = driver.freeze(cluster)  # the next snapshot, before the last one's cleanup got its turn
    driver.cleanup(cluster)
    with psycopg.connect(cluster, autocommit=True) as db:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            insert(db)
    newer.release()
    newer.cleanup()


def test_thaw_by_target_from_another_driver_makes_a_frozen_database_writable(cluster):
    before = catalog_state(cluster)
    PostgresDriver().freeze(cluster)  # its worker died: nobody will call release
    reconciler = PostgresDriver()
    assert reconciler.is_frozen(cluster) is True
    reconciler.thaw(cluster)
    assert reconciler.is_frozen(cluster) is False
    with impatient_session(cluster) as db:
        insert(db)
    reconciler.cleanup(cluster)
    assert catalog_state(cluster) == before


def test_thaw_cleanup_and_is_frozen_leave_a_database_that_was_never_frozen_unchanged(cluster):
    before = catalog_state(cluster)
    driver = PostgresDriver()
    assert driver.is_frozen(cluster) is False
    driver.thaw(cluster)
    assert catalog_state(cluster) == before
    driver.cleanup(cluster)
    assert catalog_state(cluster) == before
