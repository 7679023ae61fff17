"""Snapshots kept in an S3-compatible repository (moto's server, a process of its own),
through the real processes and snapshotctl: a PostgreSQL snapshot streamed to a bucket,
copied to a second bucket, restored by a second service process with a data directory of
its own (it never saw the files), a corrupted object refused, deletion of every copy, a
SIGKILL mid-upload leaving no snapshot and no orphaned parts, a SIGKILL while the objects
of a deleted snapshot are being removed (the restarted service removes them); credentials
nowhere."""

import time
import uuid

import psycopg
import pytest

from events.kafka import ensure_topics
from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.system import RunningSystem, snapshotctl
from tests.e2e.test_two_instances import checksum, make_database
from tests.s3_server import CREDENTIALS, RefusingProxy


def until(check, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never held")
        time.sleep(0.3)
    return result


@pytest.fixture
def s3_deployment(broker, tmp_path, postgres_database, s3_server):
    suffix = uuid.uuid4().hex[:8]
    primary, dr = s3_server.new_bucket(), s3_server.new_bucket()
    settings = dict(event_store="postgres", postgres_dsn=postgres_dsn(postgres_database),
                    service_id=f"s3-{suffix}", commands_topic=f"s3.commands.{suffix}",
                    events_topic=f"s3.events.{suffix}", dlq_topic=f"s3.dlq.{suffix}",
                    repository=f"s3://{primary}/prod", copy_targets=f"s3://{dr}/dr,s3://{primary}/other",
                    s3_part_size_bytes=str(5 << 20), reconcile_interval_seconds="3")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    system = RunningSystem(broker.bootstrap_servers, tmp_path / "a", **settings)
    system.env.update(s3_server.env)
    other = RunningSystem(broker.bootstrap_servers, tmp_path / "b", **settings)
    other.env.update(s3_server.env)
    databases = []
    yield system, other, primary, dr, databases
    system.stop()
    other.stop()
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        for name in databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def start(system, cluster: str, database: str) -> None:
    await ensure_topics(system.bootstrap_servers, 3, [system.commands_topic, system.events_topic,
                                                      system.env["SNAPSHOT_DLQ_TOPIC"]])
    system.start()
    system.wait_for_api("/clusters", lambda r: r.status_code == 200, timeout=60)
    done = snapshotctl("register-cluster", cluster, "--driver", "postgres", "--target", postgres_dsn(database),
                       env=system.env)
    assert done.returncode == 0, done.stderr


def manifests(s3_server, bucket: str) -> list[str]:
    return [key for key in s3_server.objects(bucket) if key.endswith("/manifest.json")]


async def test_snapshot_to_s3_copy_restore_elsewhere_refuse_corruption_and_delete_every_copy(s3_deployment, s3_server):
    system, other, primary, dr, databases = s3_deployment
    cluster, database = f"dws-s3-{uuid.uuid4().hex[:6]}", f"dws_s3_{uuid.uuid4().hex[:8]}"
    databases += [database, f"{cluster}-restored", f"{cluster}-bad"]
    source = make_database(database, 50_000)
    await start(system, cluster, database)

    created = snapshotctl("create", cluster, "s3-nightly-1", "--wait", env=system.env)
    assert created.returncode == 0, created.stderr
    snapshot = system.wait_for_api("/snapshots/s3-nightly-1", lambda r: r.status_code == 200
                                   and r.json()["status"] == "Available").json()
    assert snapshot["repository"] == f"s3://{primary}/prod" and snapshot["copies"] == []
    [manifest] = manifests(s3_server, primary)
    attempt_dir = manifest.rsplit("/", 1)[0]
    assert attempt_dir.startswith(f"prod/{cluster}/s3-nightly-1/")
    assert s3_server.objects(primary)[attempt_dir + "/database.pgdump"] == snapshot["size_bytes"]
    assert not list((system.data_dir / "snapshots").rglob("*.pgdump"))  # nothing kept locally
    assert not list((system.data_dir / "staging").rglob("*.pgdump"))
    completed = [e for e in system.get("/snapshots/s3-nightly-1/history").json()["events"]
                 if e["type"] == "SnapshotCompleted"]
    assert completed[0]["data"]["repository"] == f"s3://{primary}/prod"

    # A copy to a listed target, verified there; an unlisted one is refused.
    copied = snapshotctl("copy", cluster, "s3-nightly-1", "--to", f"s3://{dr}/dr/", "--wait", env=system.env)
    assert copied.returncode == 0, copied.stderr
    assert "SnapshotCopyStarted" in copied.stdout and "SnapshotCopied" in copied.stdout
    assert sorted(k.split("/", 1)[1] for k in s3_server.objects(dr)) == sorted(
        k.split("/", 1)[1] for k in s3_server.objects(primary))
    refused = snapshotctl("copy", cluster, "s3-nightly-1", "--to", "s3://elsewhere/x", "--wait", env=system.env)
    assert refused.returncode != 0 and "target_not_allowed" in refused.stderr + refused.stdout
    snapshot = system.wait_for_api("/snapshots/s3-nightly-1", lambda r: r.json()["copies"]
                                   and r.json()["copies"][0]["status"] == "Available").json()
    assert snapshot["copies"] == [{"repository": f"s3://{dr}/dr", "status": "Available",
                                   "size_bytes": snapshot["size_bytes"]}]

    # A second service process, its own empty data directory, restores from the bucket.
    system.kill("service")
    other.env["SNAPSHOT_API_TOKEN"] = system.env["SNAPSHOT_API_TOKEN"]
    other.start_part("service", "service")
    restored = snapshotctl("restore", cluster, "s3-nightly-1", f"{cluster}-restored", "--wait", env=system.env)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    copy = system.wait_for_api(f"/clusters/{cluster}-restored", lambda r: r.status_code == 200).json()
    assert checksum(copy["target"]) == checksum(source)

    # One flipped byte in the bucket: refused before anything is restored.
    client, data_key = s3_server.client(), attempt_dir + "/database.pgdump"
    body = bytearray(client.get_object(Bucket=primary, Key=data_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=primary, Key=data_key, Body=bytes(body))
    bad = snapshotctl("restore", cluster, "s3-nightly-1", f"{cluster}-bad", "--wait", env=system.env)
    assert bad.returncode != 0 and "do not match the manifest" in bad.stderr + bad.stdout
    with psycopg.connect(dbname="postgres", **POSTGRES) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"{cluster}-bad",)).fetchone() is None

    deleted = snapshotctl("delete", cluster, "s3-nightly-1", "--wait", env=system.env)
    assert deleted.returncode == 0, deleted.stderr
    until(lambda: not s3_server.objects(primary) and not s3_server.objects(dr), what="every copy deleted")

    # The credentials never reached a log or the event store.
    secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    for running, part in ((system, "service"), (system, "projection"), (system, "api"), (other, "service")):
        assert secret not in running.log(part)
    with psycopg.connect(system.env["SNAPSHOT_POSTGRES_DSN"]) as store:
        events, with_secret = store.execute(
            "SELECT count(*), count(*) FILTER (WHERE position(%s::bytea in state) > 0) FROM snapshots_events",
            (secret.encode(),)).fetchone()
    assert events > 10 and with_secret == 0


async def test_a_service_killed_mid_upload_leaves_no_snapshot_and_no_orphaned_parts(s3_deployment, s3_server):
    system, _, primary, _, databases = s3_deployment
    cluster, database = f"dws-s3k-{uuid.uuid4().hex[:6]}", f"dws_s3k_{uuid.uuid4().hex[:8]}"
    databases.append(database)
    make_database(database, 1_500_000)
    await start(system, cluster, database)

    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": cluster, "snapshot_name": "s3-crash-1"})
    until(lambda: any(u["Parts"] for u in s3_server.uploads(primary)), timeout=120, what="a part uploaded")
    system.kill("service")
    [upload] = s3_server.uploads(primary)
    assert manifests(s3_server, primary) == []  # no manifest: nothing is a snapshot
    assert system.get("/snapshots/s3-crash-1").json()["status"] == "Creating"

    # And an upload that a process long gone left for a snapshot that is no longer written.
    s3_server.client().create_multipart_upload(Bucket=primary, Key=f"prod/{cluster}/s3-gone-1/x1/database.pgdump")

    system.start_part("service", "service")  # resumes the snapshot in a new attempt
    await system.events_of(command_id, "ClusterUnlocked", timeout=240)
    snapshot = system.wait_for_api("/snapshots/s3-crash-1", lambda r: r.json()["status"] == "Available").json()
    until(lambda: s3_server.uploads(primary) == [], what="every orphaned upload aborted")
    [manifest] = manifests(s3_server, primary)
    attempt_dir = manifest.rsplit("/", 1)[0]
    assert not upload["Key"].startswith(attempt_dir + "/")
    assert sorted(s3_server.objects(primary)) == [attempt_dir + "/database.pgdump", manifest]
    assert s3_server.objects(primary)[attempt_dir + "/database.pgdump"] == snapshot["size_bytes"]


async def test_objects_left_by_a_delete_cut_short_by_sigkill_are_removed_after_the_restart(
        broker, tmp_path, postgres_database, s3_server):
    """SnapshotDeleted is stored, the deletion of the objects keeps failing (the S3 endpoint
    refuses deletions), the service is SIGKILLed: its retried delete job dies with it. The
    restarted service's scheduler pass finds the objects, in the bucket and in the copy,
    and removes them."""
    suffix = uuid.uuid4().hex[:8]
    primary, dr = s3_server.new_bucket(), s3_server.new_bucket()
    cluster, database = f"dws-s3d-{suffix[:6]}", f"dws_s3d_{suffix}"
    with RefusingProxy(s3_server.endpoint) as proxy:
        system = RunningSystem(broker.bootstrap_servers, tmp_path, event_store="postgres",
                               postgres_dsn=postgres_dsn(postgres_database), service_id=f"s3d-{suffix}",
                               commands_topic=f"s3d.commands.{suffix}", events_topic=f"s3d.events.{suffix}",
                               dlq_topic=f"s3d.dlq.{suffix}", repository=f"s3://{primary}/prod",
                               copy_targets=f"s3://{dr}/dr", scheduler_interval_seconds="1")
        system.env.update({**s3_server.env, "AWS_ENDPOINT_URL_S3": proxy.endpoint})
        try:
            make_database(database, 20_000)
            await start(system, cluster, database)
            for command in (("create", cluster, "s3-del-1", "--wait"),
                            ("copy", cluster, "s3-del-1", "--to", f"s3://{dr}/dr", "--wait")):
                done = snapshotctl(*command, env=system.env)
                assert done.returncode == 0, done.stderr
            assert len(s3_server.objects(primary)) == 2 and len(s3_server.objects(dr)) == 2

            proxy.refusing.set()
            deleted = snapshotctl("delete", cluster, "s3-del-1", "--wait", env=system.env)
            assert deleted.returncode == 0, deleted.stderr
            until(lambda: proxy.refused >= 3, what="the deletion tried and refused")
            system.kill("service")
            assert len(s3_server.objects(primary)) == 2 and len(s3_server.objects(dr)) == 2
            assert system.get("/snapshots/s3-del-1").status_code == 404 or \
                system.get("/snapshots/s3-del-1").json()["status"] == "Deleted"

            proxy.refusing.clear()
            before = len(system.log("service"))
            system.start_part("service", "service")
            until(lambda: not s3_server.objects(primary) and not s3_server.objects(dr), timeout=90,
                  what="the leftover objects removed")
            assert "removing the leftover files of deleted snapshot s3-del-1" in system.log("service")[before:]
        finally:
            system.stop()
            with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
