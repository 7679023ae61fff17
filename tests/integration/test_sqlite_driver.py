"""The embedded `sqlite` driver on real SQLite files: writes really refused, copy consistent."""

import sqlite3

import pytest

from services.snapshots.demo import create_demo_warehouse
from services.snapshots.drivers import DriverError, SQLiteDriver


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.sqlite"
    create_demo_warehouse(path, customers=50, sales=200)
    return path


def write(path) -> None:
    with sqlite3.connect(path, timeout=0.1) as db:
        db.execute("INSERT INTO customers (name, region) VALUES ('late', 'north')")


def test_writes_are_refused_while_the_cluster_is_frozen(warehouse):
    frozen = SQLiteDriver().freeze(str(warehouse))
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            write(warehouse)
    finally:
        frozen.release()


def test_reads_go_on_while_the_cluster_is_frozen(warehouse):
    frozen = SQLiteDriver().freeze(str(warehouse))
    try:
        with sqlite3.connect(warehouse) as db:
            assert db.execute("SELECT count(*) FROM customers").fetchone() == (50,)
    finally:
        frozen.release()


def test_writes_succeed_again_after_release(warehouse):
    SQLiteDriver().freeze(str(warehouse)).release()
    write(warehouse)
    with sqlite3.connect(warehouse) as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone() == (51,)


def test_the_copy_holds_every_row_and_reports_its_size_and_digest(warehouse, tmp_path):
    frozen = SQLiteDriver().freeze(str(warehouse))
    try:
        files = frozen.copy_to(tmp_path / "repo" / "nightly-01")
    finally:
        frozen.release()
    with sqlite3.connect(files.path) as copy, sqlite3.connect(warehouse) as source:
        for table in ("customers", "sales"):
            query = f"SELECT * FROM {table} ORDER BY id"
            assert copy.execute(query).fetchall() == source.execute(query).fetchall()
    assert files.size_bytes == files.path.stat().st_size > 0
    assert len(files.sha256) == 64


def test_a_missing_database_file_is_a_driver_error(tmp_path):
    with pytest.raises(DriverError, match="does not exist"):
        SQLiteDriver().freeze(str(tmp_path / "missing.sqlite"))
