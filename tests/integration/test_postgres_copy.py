"""The `postgres` driver's copy as a polled `pg_dump`: cancelled on request, progress as
it goes, and only the environment the tool needs. Against the local PostgreSQL 15."""

import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from services.snapshots.drivers import CopyCancelled
from services.snapshots.drivers.postgres import PostgresDriver
from tests.conftest import POSTGRES, postgres_dsn
from tests.integration.postgres_warehouse import create_sample_tables, impatient_session, insert, pg_dump_sessions


@pytest.fixture(scope="module")
def large_cluster():
    """About 160 MB of rows: pg_dump needs a couple of seconds for it."""
    name = f"dws_test_large_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = create_sample_tables(postgres_dsn(name))
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS body "
                   "FROM generate_series(1, 1500000) g")
    yield target
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(postgres_database):
    return create_sample_tables(postgres_dsn(postgres_database))


def child_pg_dumps() -> list[int]:
    """pg_dump processes whose parent is this test process, zombies included."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue  # the process ended while we looked
        command, fields = rest.rsplit(") ", 1)
        if command == "pg_dump" and int(fields.split()[1]) == os.getpid():
            found.append(int(pid))
    return found


def test_a_cancelled_dump_stops_pg_dump_and_leaves_no_partial_file(large_cluster, tmp_path):
    cancel, cancelled_at = threading.Event(), []

    def cancel_once_writing(done, total):
        if done > 0 and not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    frozen = PostgresDriver().freeze(large_cluster)
    try:
        with pytest.raises(CopyCancelled):
            frozen.copy_to(tmp_path / "cancelled", cancel=cancel, progress=cancel_once_writing)
        assert time.monotonic() - cancelled_at[0] < 1.0
    finally:
        frozen.release()
        frozen.cleanup()
    assert list((tmp_path / "cancelled").iterdir()) == []
    assert child_pg_dumps() == []
    assert pg_dump_sessions(large_cluster) == 0  # the server-side query was cancelled too
    with impatient_session(large_cluster) as db:
        insert(db)


def test_the_dump_reports_its_growing_size_against_an_estimate_refined_as_it_goes(large_cluster, tmp_path):
    with psycopg.connect(large_cluster) as db:
        database_size = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    reports = []
    frozen = PostgresDriver().freeze(large_cluster)
    try:
        files = frozen.copy_to(tmp_path / "watched", progress=lambda done, total: reports.append((done, total)))
    finally:
        frozen.release()
        frozen.cleanup()
    done, totals = [d for d, _ in reports], [total for _, total in reports[:-1]]
    assert done == sorted(done) and any(0 < d < done[-1] for d in done)
    assert max(totals) <= database_size * 1.05  # the first estimate is the database size
    final = files.size_bytes  # compressed, without indexes: far smaller than the database
    assert final < database_size / 2
    # Refined as the dump reads the tables: the estimate ends near the dump's real size...
    assert abs(totals[-1] - final) < 0.25 * final
    # ...so the share shown moves on steadily instead of jumping from a quarter to done.
    halfway = [d / t for d, t in reports[:-1] if d >= final / 2]
    assert halfway and min(halfway) > 0.3
    assert reports[-1] == (files.size_bytes, files.size_bytes)


def test_pg_dump_gets_only_the_environment_it_needs_and_the_configured_password(cluster, tmp_path, monkeypatch):
    record = tmp_path / "pg_dump.env"
    wrapper = tmp_path / "bin" / "pg_dump"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nenv > "{record}"\nexec "{shutil.which("pg_dump")}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SNAPSHOT_UNRELATED_SECRET", "not for pg_dump")
    monkeypatch.setenv("PGPASSWORD", "the service's own")
    monkeypatch.setenv("PGSSLMODE", "disable")
    frozen = PostgresDriver(passwords={cluster: "the cluster's"}).freeze(cluster)  # trust auth ignores it
    try:
        frozen.copy_to(tmp_path / "snapshot")
    finally:
        frozen.release()
        frozen.cleanup()
    seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    assert "SNAPSHOT_UNRELATED_SECRET" not in seen
    assert seen["PGPASSWORD"] == "the cluster's" and seen["PGSSLMODE"] == "disable"
    assert seen["PATH"].startswith(str(wrapper.parent))
