"""A real PostgreSQL database as a cluster, through the running processes and snapshotctl:
snapshot, size warning, restore into a new database, delete."""

import time
import uuid

import psycopg
import pytest

from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.system import snapshotctl


@pytest.fixture
def pg_cluster(system, postgres_database):
    name = f"dws-pg-{uuid.uuid4().hex[:6]}"
    target = postgres_dsn(postgres_database)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE sales (id serial PRIMARY KEY, amount int)")
        db.execute("INSERT INTO sales (amount) SELECT g FROM generate_series(1, 2000) g")
        db.execute("CREATE TABLE audit (id serial PRIMARY KEY, body text) WITH (autovacuum_enabled = false)")
        db.execute("INSERT INTO audit (body) SELECT repeat('x', 50) FROM generate_series(1, 5000)")
        db.execute("DELETE FROM audit WHERE id > 500")
        db.execute("SELECT pg_stat_force_next_flush()")
        db.execute("SELECT 1")
        for _ in range(50):
            if db.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'audit'").fetchone()[0] >= 4500:
                break
            time.sleep(0.1)
    done = snapshotctl("register-cluster", name, "--driver", "postgres", "--target", target, env=system.env)
    assert done.returncode == 0, done.stderr
    yield name, target
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}-copy" WITH (FORCE)')


def rows(target) -> list:
    with psycopg.connect(target) as db:
        return db.execute("SELECT * FROM sales ORDER BY id").fetchall()


def test_a_postgres_cluster_is_snapshotted_with_a_size_warning_restored_and_deleted(system, pg_cluster):
    cluster, target = pg_cluster
    created = snapshotctl("create", cluster, "pg-nightly-1", "--wait", env=system.env)
    assert created.returncode == 0, created.stderr
    assert "VACUUM FULL public.audit" in created.stderr  # the seed's size warning, shown by the CLI
    snapshot = system.wait_for_api("/snapshots/pg-nightly-1", lambda r: r.status_code == 200
                                   and r.json()["status"] == "Available").json()
    assert "public.audit" in snapshot["warning"] and snapshot["size_bytes"] > 0
    at_snapshot = rows(target)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO sales (amount) VALUES (-1)")

    restored = snapshotctl("restore", cluster, "pg-nightly-1", f"{cluster}-copy", "--wait", env=system.env)
    assert restored.returncode == 0, restored.stderr
    assert "RestoreStarted" in restored.stdout and "RestoreCompleted" in restored.stdout
    copy = system.wait_for_api(f"/clusters/{cluster}-copy", lambda r: r.status_code == 200).json()
    assert copy["driver"] == "postgres" and copy["target"].endswith(f"/{cluster}-copy")
    assert rows(copy["target"]) == at_snapshot != rows(target)

    deleted = snapshotctl("delete", cluster, "pg-nightly-1", "--wait", env=system.env)
    assert deleted.returncode == 0, deleted.stderr
    system.wait_for_api("/snapshots/pg-nightly-1", lambda r: r.status_code == 404)
    assert not (system.data_dir / "snapshots" / cluster / "pg-nightly-1").exists()
    again = snapshotctl("delete", cluster, "pg-nightly-1", "--wait", env=system.env)
    assert again.returncode != 0 and "unknown_snapshot" in again.stderr


def test_restoring_a_failed_snapshot_is_rejected_not_available(system):
    registration = snapshotctl("register-cluster", "dws-broken", "--target", str(system.data_dir / "nope.sqlite"),
                               env=system.env)
    assert registration.returncode == 0, registration.stderr
    assert snapshotctl("create", "dws-broken", "broken-1", "--wait", env=system.env).returncode != 0
    refused = snapshotctl("restore", "dws-broken", "broken-1", "dws-broken-copy", "--wait", env=system.env)
    assert refused.returncode != 0 and "snapshot_not_available" in refused.stderr
