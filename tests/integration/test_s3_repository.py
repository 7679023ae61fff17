"""The S3 snapshot repository against a real S3-compatible server (moto's server mode, a
process of its own): SQLite staged then uploaded, pg_dump streamed with no local file,
the manifest last, cancelled uploads aborted, orphaned uploads aborted, a corrupted object
refused, the local repository unchanged."""

import sqlite3
import threading
import uuid

import psycopg
import pytest

from services.snapshots.demo import create_demo_warehouse
from services.snapshots.drivers import CopyCancelled, DriverError, SQLiteDriver
from services.snapshots.drivers.postgres import PostgresDriver
from services.snapshots.repository import (LocalRepository, Repositories, RepositoryError, SnapshotKey,
                                            copy_snapshot)
from services.snapshots.s3_repository import S3Repository
from tests.conftest import POSTGRES, postgres_dsn
from tests.integration.postgres_warehouse import create_sample_tables

PART = 5 << 20


@pytest.fixture
def bucket(s3_server, s3_env):
    return s3_server.new_bucket()


@pytest.fixture
def repository(bucket, tmp_path):
    return S3Repository(f"s3://{bucket}/team-a", tmp_path / "staging", part_size=PART)


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.sqlite"
    create_demo_warehouse(path, customers=50, sales=500)
    return path


@pytest.fixture(scope="module")
def big_cluster():
    """Enough rows that pg_dump's output is several 5 MiB parts."""
    name = f"dws_test_s3_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = create_sample_tables(postgres_dsn(name))
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) || md5((g + 7)::text) AS body "
                   "FROM generate_series(1, 400000) g")
    yield target
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        for database in (name, f"{name}_copy"):
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def rows(path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM sales ORDER BY id").fetchall()


def snapshot(repository, driver, target: str, key: SnapshotKey, cancel=None, progress=None):
    frozen = driver.freeze(target)
    try:
        return repository.source(frozen, key).copy_to(repository.directory(key), cancel, progress)
    finally:
        frozen.release()


def test_a_sqlite_snapshot_is_uploaded_manifest_last_and_restores_anywhere(
        s3_server, bucket, repository, warehouse, tmp_path):
    key = SnapshotKey("DWS-One", "Nightly-01", "a1")
    files = snapshot(repository, SQLiteDriver(tmp_path / "clusters"), str(warehouse), key)

    assert s3_server.objects(bucket) == {"team-a/dws-one/nightly-01/a1/cluster.sqlite": files.size_bytes,
                                         "team-a/dws-one/nightly-01/a1/manifest.json": pytest.approx(300, abs=300)}
    assert not (tmp_path / "staging" / "dws-one").exists() or not any((tmp_path / "staging").rglob("*.sqlite"))
    assert repository.manifest(key)["sha256"] == files.sha256
    assert repository.list() == [SnapshotKey("dws-one", "nightly-01", "a1")]

    # Another process (another staging directory, a new client) restores it.
    elsewhere = S3Repository(repository.url, tmp_path / "other-staging", part_size=PART)
    restorer = SQLiteDriver(tmp_path / "other-clusters")
    with elsewhere.fetched(key) as directory:
        restored = restorer.restore(directory, str(warehouse), "dws-copy", files.sha256)
    assert rows(restored) == rows(warehouse)
    assert not list((tmp_path / "other-staging").iterdir())  # the download is gone


def test_a_corrupted_object_is_refused_before_anything_is_restored(
        s3_server, bucket, repository, warehouse, tmp_path):
    key = SnapshotKey("dws-one", "nightly-02", "b2")
    files = snapshot(repository, SQLiteDriver(tmp_path / "clusters"), str(warehouse), key)
    data = s3_server.client().get_object(Bucket=bucket, Key="team-a/dws-one/nightly-02/b2/cluster.sqlite")["Body"].read()
    damaged = data[:4096] + bytes([data[4096] ^ 0xFF]) + data[4097:]
    s3_server.client().put_object(Bucket=bucket, Key="team-a/dws-one/nightly-02/b2/cluster.sqlite", Body=damaged)

    restorer = SQLiteDriver(tmp_path / "restored")
    with pytest.raises(DriverError, match="do not match the manifest"), repository.fetched(key) as directory:
        restorer.restore(directory, str(warehouse), "dws-bad", files.sha256)
    assert not (tmp_path / "restored" / "dws-bad.sqlite").exists()


def test_a_snapshot_without_its_manifest_is_incomplete(s3_server, bucket, repository, warehouse, tmp_path):
    key = SnapshotKey("dws-one", "nightly-03", "c3")
    snapshot(repository, SQLiteDriver(tmp_path / "clusters"), str(warehouse), key)
    s3_server.client().delete_object(Bucket=bucket, Key="team-a/dws-one/nightly-03/c3/manifest.json")
    assert repository.list() == []
    with pytest.raises(RepositoryError, match="no manifest"), repository.fetched(key):
        pass


def test_pg_dump_streams_to_s3_without_a_local_file(s3_server, bucket, repository, big_cluster, tmp_path):
    key = SnapshotKey("dws-pg", "nightly-01", "d4")
    staging, local_files, parts_seen = tmp_path / "staging", [], []

    def watch(done, total):  # called while pg_dump runs: nothing may be on the local disk
        local_files.extend(p for p in staging.rglob("*") if p.is_file())
        parts_seen.extend(part for upload in s3_server.uploads(bucket) for part in upload["Parts"])

    files = snapshot(repository, PostgresDriver(), big_cluster, key, progress=watch)
    assert local_files == [] and files.size_bytes > PART
    assert parts_seen, "parts were uploaded while pg_dump was still running"
    assert s3_server.uploads(bucket) == []
    manifest = repository.manifest(key)
    assert manifest["file"] == "database.pgdump" and manifest["sha256"] == files.sha256
    assert manifest["row_counts"]["public.facts"] == 400000

    driver = PostgresDriver()
    with repository.fetched(key) as directory:
        target = driver.restore(directory, big_cluster, big_cluster.rsplit("/", 1)[1] + "_copy", files.sha256)
    with psycopg.connect(target) as db:
        assert db.execute("SELECT count(*), sum(id) FROM facts").fetchone() == (400000, 400000 * 400001 // 2)


def test_a_cancelled_stream_aborts_its_upload_and_leaves_nothing(s3_server, bucket, repository, big_cluster):
    key, cancel = SnapshotKey("dws-pg", "nightly-02", "e5"), threading.Event()

    def cancel_after_a_part(done, total):
        if done > PART + (1 << 20):
            cancel.set()

    with pytest.raises(CopyCancelled):
        snapshot(repository, PostgresDriver(), big_cluster, key, cancel, cancel_after_a_part)
    assert s3_server.uploads(bucket) == [] and s3_server.objects(bucket) == {}


def test_uploads_of_no_running_workflow_are_aborted_and_others_kept(s3_server, bucket, repository):
    client = s3_server.client()
    for path in ("team-a/dws-one/gone-01/f1/database.pgdump", "team-a/dws-two/busy-01/f2/database.pgdump",
                 "other-team/dws-one/gone-01/f1/database.pgdump",
                 "team-a/dws-two/older-01/cluster.sqlite"):  # a copy of a snapshot from before attempts
        upload = client.create_multipart_upload(Bucket=bucket, Key=path)
        client.upload_part(Bucket=bucket, Key=path, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 100)

    assert repository.abort_uploads(lambda: {("dws-two", "busy-01"), ("dws-two", "older-01")}) == 1
    assert sorted(u["Key"] for u in s3_server.uploads(bucket)) == [
        "other-team/dws-one/gone-01/f1/database.pgdump", "team-a/dws-two/busy-01/f2/database.pgdump",
        "team-a/dws-two/older-01/cluster.sqlite"]


def test_delete_removes_every_attempt_and_unfinished_upload(s3_server, bucket, repository, warehouse, tmp_path):
    driver = SQLiteDriver(tmp_path / "clusters")
    snapshot(repository, driver, str(warehouse), SnapshotKey("dws-one", "weekly-01", "g1"))
    snapshot(repository, driver, str(warehouse), SnapshotKey("dws-one", "weekly-010", "g2"))
    client = s3_server.client()
    client.create_multipart_upload(Bucket=bucket, Key="team-a/dws-one/weekly-01/g3/cluster.sqlite")

    repository.delete(SnapshotKey("dws-one", "weekly-01"))
    assert sorted(s3_server.objects(bucket)) == ["team-a/dws-one/weekly-010/g2/cluster.sqlite",
                                                 "team-a/dws-one/weekly-010/g2/manifest.json"]
    assert s3_server.uploads(bucket) == []


def test_repository_urls_and_the_local_default(tmp_path):
    local = LocalRepository(tmp_path / "snapshots")
    repositories = Repositories(local, local, tmp_path / "staging", ("s3://backups/dr/", "s3://other"))
    assert repositories.get(None) is local and repositories.get("local") is local
    assert repositories.allows_copy_to("s3://backups/dr") and not repositories.allows_copy_to("s3://backups/x")
    assert not repositories.allows_copy_to("https://evil.example/x")
    with pytest.raises(RepositoryError, match="not a repository URL"):
        repositories.get("s3://user:secret@host/bucket")
    assert local.directory(SnapshotKey("DWS-One", "Nightly", "a1")) == tmp_path / "snapshots" / "dws-one" / "nightly" / "a1"


def test_a_snapshot_from_before_attempts_copied_to_s3_is_listed_and_deleted(s3_server, bucket, repository,
                                                                             warehouse, tmp_path):
    local = LocalRepository(tmp_path / "snapshots")
    key = SnapshotKey("dws-one", "old-01")  # its files in the snapshot's directory itself
    files = snapshot(local, SQLiteDriver(tmp_path / "clusters"), str(warehouse), key)
    assert copy_snapshot(local, repository, key, files.sha256) == files.size_bytes
    assert repository.list() == [key]
    repository.delete(key)
    assert s3_server.objects(bucket) == {}
