"""The `postgres` driver's online copy against the local PostgreSQL 15: the data is fixed by
the snapshot exported under the freeze; once `pinned` is called, writes may go on (the
freeze released by target, as the workflow does) and none of them is in the copy."""

import threading
import uuid

import psycopg
from psycopg.conninfo import make_conninfo
import pytest

from services.snapshots.drivers import CopyCancelled, DriverError
from services.snapshots.drivers.postgres import PostgresDriver
from tests.conftest import POSTGRES, postgres_dsn
from tests.integration.postgres_warehouse import catalog_state, create_sample_tables, impatient_session


@pytest.fixture
def cluster(postgres_database):
    target = create_sample_tables(postgres_dsn(postgres_database))
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 300000) g")
    return target


def dump_locks(target: str) -> int:
    """How many tables the online pg_dump of this test holds ACCESS SHARE locks on."""
    with psycopg.connect(target, autocommit=True) as db:
        return db.execute("SELECT count(DISTINCT l.relation) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                          "JOIN pg_class c ON c.oid = l.relation WHERE a.application_name LIKE 'dws-snapshot-%%' "
                          "AND l.mode = 'AccessShareLock' AND l.granted AND c.relkind = 'r' "
                          "AND c.relnamespace = 'public'::regnamespace").fetchone()[0]


def restored_customers(driver: PostgresDriver, directory, target: str) -> int:
    name = f"dws_online_copy_{uuid.uuid4().hex[:8]}"
    copy = driver.restore(directory, target, name)
    try:
        with psycopg.connect(copy) as db:
            return db.execute("SELECT count(*) FROM customers").fetchone()[0]
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_writes_after_pinned_go_through_and_are_not_in_the_copy(cluster, tmp_path):
    driver, seen = PostgresDriver(), {}

    def pinned():  # what the workflow does: release by target, then the cluster is writable
        seen["locks"] = dump_locks(cluster)
        driver.thaw(cluster)
        with impatient_session(cluster) as db:  # no wait: the dump's locks do not hold writers
            for _ in range(25):
                db.execute("INSERT INTO customers (name) VALUES ('after the freeze')")

    frozen = driver.freeze(cluster)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), psycopg.connect(cluster, autocommit=True) as db:
            db.execute("INSERT INTO customers (name) VALUES ('refused')")
        files = frozen.copy_online(tmp_path / "online", threading.Event(), pinned)
    finally:
        frozen.release()
        frozen.cleanup()
    assert seen["locks"] == 3  # customers, orders, facts: every table locked before the release
    manifest = (tmp_path / "online" / "manifest.json").read_text()
    assert '"public.customers": 100' in manifest  # counted in the exported snapshot
    assert restored_customers(driver, files.directory, cluster) == 100
    with psycopg.connect(cluster) as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 125
    assert catalog_state(cluster)[0] == (0,)  # no trigger left once cleaned up


def test_a_cancelled_online_copy_stops_pg_dump_and_leaves_no_partial_file(cluster, tmp_path):
    cancel = threading.Event()
    frozen = PostgresDriver().freeze(cluster)
    try:
        with pytest.raises(CopyCancelled):
            frozen.copy_online(tmp_path / "cancelled", cancel, cancel.set)  # cancelled once pinned
    finally:
        frozen.release()
        frozen.cleanup()
    assert list((tmp_path / "cancelled").iterdir()) == []
    assert dump_locks(cluster) == 0


def test_an_online_copy_that_cannot_export_is_a_driver_error(cluster, tmp_path):
    driver = PostgresDriver()
    frozen = driver.freeze(cluster)
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                          "AND pid <> pg_backend_pid()", (cluster.rsplit("/", 1)[1],))
        pinned = threading.Event()
        with pytest.raises(DriverError):
            frozen.copy_online(tmp_path / "broken", threading.Event(), pinned.set)
        assert not pinned.is_set()
    finally:
        driver.thaw(cluster)
        driver.cleanup(cluster)


def test_the_compression_level_reaches_pg_dump(cluster, tmp_path):
    sizes = {}
    for level in (0, 1):
        driver = PostgresDriver(compression=level)
        frozen = driver.freeze(cluster)
        try:
            sizes[level] = frozen.copy_online(tmp_path / str(level), threading.Event(), lambda: None).size_bytes
        finally:
            frozen.release()
            frozen.cleanup()
    assert sizes[0] > 1.5 * sizes[1]  # md5 hex text: zlib's fastest level saves about half


def test_postgres_going_away_during_an_online_copy_fails_it_without_a_partial_file(private_postgres, tmp_path):
    server = private_postgres
    target = server.create_database("warehouse")
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 300000) g")
    driver = PostgresDriver(compression=0)
    frozen = driver.freeze(target)

    def pinned():  # released, then the server stops while pg_dump copies
        driver.thaw(target)
        server.stop()

    with pytest.raises(DriverError, match="pg_dump failed"):
        frozen.copy_online(tmp_path / "gone", threading.Event(), pinned)
    frozen.close()
    assert list((tmp_path / "gone").iterdir()) == []
    server.start()
    driver.cleanup(target)  # what the workflow's background job does once the server is back
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO facts VALUES (0, 'writable')")
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = '_dws_snapshot_freeze'").fetchone()[0] == 0


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_target_naming_its_own_application_name_still_unlocks_once_the_dump_holds_its_locks(
        cluster, tmp_path, form):
    """The dump is found by the application_name the driver gives it, whatever the target sets."""
    target = (f"{cluster}?application_name=analytics" if form == "url"
              else make_conninfo(cluster, application_name="analytics"))
    driver, seen = PostgresDriver(), {}

    def pinned():
        seen["locks"] = dump_locks(cluster)

    frozen = driver.freeze(target)
    try:
        frozen.copy_online(tmp_path / form, threading.Event(), pinned)
    finally:
        frozen.release()
        frozen.cleanup()
    assert seen.get("locks") == 3  # pinned while pg_dump held every table, not after it ended
