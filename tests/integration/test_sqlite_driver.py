"""The embedded `sqlite` driver on real SQLite files: writes really refused, copy
consistent and verifiable, restore into a new file."""

import sqlite3
import subprocess
import sys
import threading

import pytest

from services.snapshots.demo import create_demo_warehouse
from services.snapshots.drivers import CopyCancelled, DriverError, SQLiteDriver


@pytest.fixture
def driver(tmp_path):
    return SQLiteDriver(tmp_path / "clusters", busy_timeout_seconds=0.2)


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.sqlite"
    create_demo_warehouse(path, customers=50, sales=200)
    return path


def write(path) -> None:
    with sqlite3.connect(path, timeout=0.1) as db:
        db.execute("INSERT INTO customers (name, region) VALUES ('late', 'north')")


def rows(path, table="sales"):
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_writes_are_refused_while_the_cluster_is_frozen(driver, warehouse):
    frozen = driver.freeze(str(warehouse))
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            write(warehouse)
    finally:
        frozen.release()


def test_reads_go_on_while_the_cluster_is_frozen(driver, warehouse):
    frozen = driver.freeze(str(warehouse))
    try:
        assert len(rows(warehouse, "customers")) == 50
    finally:
        frozen.release()


def test_writes_succeed_again_after_release(driver, warehouse):
    driver.freeze(str(warehouse)).release()
    write(warehouse)
    assert len(rows(warehouse, "customers")) == 51


def test_the_copy_holds_every_row_and_a_manifest_with_size_digest_and_row_counts(driver, warehouse, tmp_path):
    frozen = driver.freeze(str(warehouse))
    try:
        files = frozen.copy_to(tmp_path / "repo" / "nightly-01")
    finally:
        frozen.release()
    assert rows(files.directory / "cluster.sqlite") == rows(warehouse)
    manifest = (files.directory / "manifest.json").read_text()
    assert files.sha256 in manifest and '"sales": 200' in manifest
    assert files.size_bytes == (files.directory / "cluster.sqlite").stat().st_size > 0


def test_a_restore_is_a_new_file_with_the_rows_at_snapshot_time(driver, warehouse, tmp_path):
    frozen = driver.freeze(str(warehouse))
    files = frozen.copy_to(tmp_path / "repo" / "nightly-01")
    frozen.release()
    at_snapshot = rows(warehouse, "customers")
    write(warehouse)
    target = driver.restore(files.directory, str(warehouse), "dws-copy", files.sha256)
    assert rows(target, "customers") == at_snapshot != rows(warehouse, "customers")


def test_a_snapshot_whose_file_was_altered_is_not_restored(driver, warehouse, tmp_path):
    frozen = driver.freeze(str(warehouse))
    files = frozen.copy_to(tmp_path / "repo" / "nightly-01")
    frozen.release()
    with open(files.directory / "cluster.sqlite", "r+b") as data:
        data.seek(200)
        data.write(b"tampered")
    with pytest.raises(DriverError, match="do not match the manifest"):
        driver.restore(files.directory, str(warehouse), "dws-copy")


def test_a_missing_database_file_is_a_driver_error(driver, tmp_path):
    with pytest.raises(DriverError, match="does not exist"):
        driver.freeze(str(tmp_path / "missing.sqlite"))


def test_the_services_own_event_store_cannot_be_frozen_as_a_cluster(tmp_path):
    store = tmp_path / "events.sqlite"
    create_demo_warehouse(store, 1, 1)
    driver = SQLiteDriver(tmp_path / "clusters", forbidden=(store, tmp_path / "snapshots"))
    with pytest.raises(DriverError, match="belongs to the snapshot service"):
        driver.freeze(str(store))
    with pytest.raises(DriverError, match="belongs to the snapshot service"):
        driver.freeze(str(tmp_path / "snapshots" / "c" / "s" / "cluster.sqlite"))


@pytest.fixture
def large_warehouse(tmp_path):
    """Big enough (hundreds of pages) that an 8-page step takes many steps."""
    path = tmp_path / "large.sqlite"
    create_demo_warehouse(path, customers=3000, sales=30000)
    return path


def test_a_cancelled_copy_stops_leaves_no_partial_file_and_lets_writers_in_after_release(large_warehouse, tmp_path):
    driver = SQLiteDriver(tmp_path / "clusters", busy_timeout_seconds=0.2, copy_step_pages=8)
    cancel, steps = threading.Event(), []

    def cancel_after_the_first_step(done, total):
        steps.append(done)
        cancel.set()

    frozen = driver.freeze(str(large_warehouse))
    try:
        with pytest.raises(CopyCancelled):
            frozen.copy_to(tmp_path / "repo" / "cancelled", cancel=cancel, progress=cancel_after_the_first_step)
    finally:
        frozen.release()
    assert len(steps) == 1
    assert list((tmp_path / "repo" / "cancelled").iterdir()) == []
    write(large_warehouse)  # at once: the busy timeout of `write` is 0.1 s


def test_the_copy_reports_growing_progress_that_ends_at_the_size_of_the_file(large_warehouse, tmp_path):
    driver = SQLiteDriver(tmp_path / "clusters", copy_step_pages=8)
    reports = []
    frozen = driver.freeze(str(large_warehouse))
    try:
        files = frozen.copy_to(tmp_path / "repo" / "watched", progress=lambda done, total: reports.append((done, total)))
    finally:
        frozen.release()
    done = [d for d, _ in reports]
    assert len(reports) > 10 and done == sorted(done) and done[0] < done[-1]
    assert reports[-1] == (files.size_bytes, files.size_bytes) == (large_warehouse.stat().st_size,) * 2


def test_a_freeze_dies_with_its_process_so_nothing_is_frozen_and_thaw_and_cleanup_change_nothing(driver, warehouse):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from services.snapshots.drivers import SQLiteDriver; "
        f"SQLiteDriver(Path('unused')).freeze({str(warehouse)!r}); print('frozen', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "frozen"
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            write(warehouse)
    finally:
        holder.kill()
        holder.wait()
    before = warehouse.read_bytes()
    assert driver.is_frozen(str(warehouse)) is False
    driver.thaw(str(warehouse))
    driver.cleanup(str(warehouse))
    assert warehouse.read_bytes() == before
    write(warehouse)
