"""Progress and cancel against the real processes (service, projection, API on the embedded
broker, a SQLite event store) and a PostgreSQL cluster large enough that pg_dump takes
seconds: progress events on the topic ending at 100 %, the `create --wait` progress as plain
lines when stdout is not a terminal, a cancel mid-copy that leaves the cluster writable and
no files, a cancel of a snapshot that is not Creating refused, and a service SIGKILLed after
a cancel was recorded but before its copy stopped.

To hold a copy in the middle deterministically (never a race against its speed), a test
stops the service's `pg_dump` with SIGSTOP: the copy is then running, however fast the
machine, until it is continued or killed."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from events.commands import CancelSnapshotRequested
from events.kafka import ensure_topics
from services.snapshots import bootstrap
from services.snapshots.client import EventFollower
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.domain import CommandContext
from services.snapshots.settings import Settings
from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.system import ROOT, RunningSystem, snapshotctl
from tests.integration.postgres_warehouse import impatient_session, insert, pg_dump_sessions
from tests.integration.test_one_relay import everything_on_the_topic as read_everything

ROWS = 2_000_000  # about 210 MB: pg_dump takes several seconds here


@pytest.fixture(scope="module")
async def deployment(broker, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    system = RunningSystem(broker.bootstrap_servers, tmp_path_factory.mktemp("progress"),
                           service_id=f"pc-{suffix}", commands_topic=f"pc.commands.{suffix}",
                           events_topic=f"pc.events.{suffix}", dlq_topic=f"pc.dlq.{suffix}",
                           progress_interval_seconds="0.5", reconcile_interval_seconds="5")
    await ensure_topics(broker.bootstrap_servers, 3, [system.commands_topic, system.events_topic,
                                                      system.env["SNAPSHOT_DLQ_TOPIC"]])
    system.start()  # while the cluster is filled
    database = f"dws_progress_{suffix}"
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    target = postgres_dsn(database)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)")
        db.execute("INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 100) g")
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS body "
                   "FROM generate_series(1, %s) g", (ROWS,))
    try:
        system.wait_for_api("/clusters", lambda r: r.status_code == 200, timeout=60)
        warehouse = system.data_dir / "small.sqlite"
        create_demo_warehouse(warehouse, 10, 20)
        for name, driver, where in (("dws-big", "postgres", target), ("dws-small", "sqlite", str(warehouse))):
            done = snapshotctl("register-cluster", name, "--driver", driver, "--target", where, env=system.env)
            assert done.returncode == 0, done.stderr
        yield system, target
    finally:
        system.stop()
        with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def cli(system, *args: str) -> subprocess.Popen:
    """`snapshotctl` in the background, its stdout a pipe (not a terminal)."""
    return subprocess.Popen([sys.executable, "-m", "services.snapshots", *args], env=system.env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pg_dumps_of(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        command, fields = rest.rsplit(") ", 1)
        if command == "pg_dump" and int(fields.split()[1]) == parent and fields.split()[0] != "Z":
            found.append(int(pid))
    return found


def stop_the_dump(system, timeout: float = 60) -> int:
    """SIGSTOP the service's pg_dump once it runs: the copy is held in the middle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dumps := pg_dumps_of(system.processes["service"].pid):
            os.kill(dumps[0], signal.SIGSTOP)
            return dumps[0]
        time.sleep(0.02)
    raise AssertionError("the service never started pg_dump")


async def collect(system, into: list, until) -> None:
    async with EventFollower(system.bootstrap_servers, system.events_topic, True) as follower:
        async for envelope in follower.events():
            into.append(envelope)
            if until(envelope):
                return


def writable(target: str) -> None:
    with impatient_session(target) as db:  # a new session, refused or kept waiting: an error
        insert(db)


async def test_progress_of_a_large_postgres_snapshot_arrives_and_ends_at_100_percent(deployment):
    system, _ = deployment
    events: list = []
    following = asyncio.create_task(collect(system, events, lambda e: e.type == "ClusterUnlocked"
                                            and e.data.get("snapshot_name") == "pg-progress-1"))
    create = cli(system, "create", "dws-big", "pg-progress-1", "--wait")
    dump = await asyncio.to_thread(stop_the_dump, system)
    midway = system.wait_for_api("/snapshots/pg-progress-1", lambda r: r.status_code == 200
                                 and r.json()["progress"] is not None).json()
    described = snapshotctl("describe", "pg-progress-1", "--json", env=system.env)
    os.kill(dump, signal.SIGCONT)
    out, err = await asyncio.to_thread(create.communicate, timeout=300)
    await asyncio.wait_for(following, 60)

    assert create.returncode == 0, err
    assert midway["status"] == "Creating" and 0 <= midway["progress"]["percent"] < 100
    assert json.loads(described.stdout)["progress"]["bytes_total"] > 0
    command_id = out.split("sent CreateSnapshotRequested ")[1].split()[0]
    progress = [e for e in events if e.type == "SnapshotProgress"]
    assert len(progress) >= 3
    assert {(e.correlationid, e.authid, e.subject, e.sequence) for e in progress} == {
        (command_id, "e2e-admin", "dws-big", None)}
    done = [e.data["bytes_done"] for e in progress]
    assert done == sorted(done) and all(e.data["percent"] < 100 for e in progress[:-1])
    [completed] = [e for e in events if e.type == "SnapshotCompleted"]
    assert (progress[-1].data["percent"], progress[-1].data["bytes_done"]) == (100.0, completed.data["size_bytes"])
    assert progress[-1].data["bytes_per_second"] > 0
    assert events.index(progress[-1]) < events.index(completed)
    # Not a terminal: the bar falls back to plain lines, no escape codes.
    lines = [line for line in out.splitlines() if line.startswith("progress pg-progress-1: ")]
    assert len(lines) >= 2 and "100.0 %" in lines[-1] and "/s, ETA" in lines[0]
    assert "\x1b[" not in out
    # Telemetry: not in the history; the outcome clears it.
    history = system.get("/snapshots/pg-progress-1/history").json()["events"]
    assert "SnapshotProgress" not in {e["type"] for e in history}
    assert system.get("/snapshots/pg-progress-1").json()["progress"] is None


async def test_a_cancel_mid_copy_leaves_the_cluster_writable_and_no_files(deployment):
    system, target = deployment
    create = cli(system, "create", "dws-big", "pg-cancel-1", "--wait")
    await asyncio.to_thread(stop_the_dump, system)  # held mid-copy until the cancel kills it
    cancel = await asyncio.to_thread(snapshotctl, "cancel", "dws-big", "pg-cancel-1", "--wait", "--json",
                                     "--command-id", "cancel-pg-cancel-1", env=system.env)
    out, err = await asyncio.to_thread(create.communicate, timeout=120)

    assert cancel.returncode == 0, cancel.stderr
    outcome = json.loads(cancel.stdout)
    assert (outcome["command_id"], outcome["state"]) == ("cancel-pg-cancel-1", "accepted")
    assert [e["type"] for e in outcome["events"]] == ["SnapshotCancelled"]
    assert create.returncode == 1 and "snapshot pg-cancel-1 was cancelled" in err  # create --wait ended
    assert "ClusterUnlocked" in out
    assert system.get("/snapshots/pg-cancel-1").json()["status"] == "Cancelled"
    assert pg_dumps_of(system.processes["service"].pid) == []
    assert not (system.data_dir / "snapshots" / "dws-big" / "pg-cancel-1").exists()
    writable(target)
    cluster = system.get("/clusters/dws-big").json()
    assert (cluster["status"], cluster["task_status"]) == ("Available", None)
    again = snapshotctl("cancel", "dws-big", "pg-cancel-1", "--wait", "--command-id", "cancel-pg-cancel-1",
                        env=system.env)  # the same command retried: the same outcome, no second cancel
    assert again.returncode == 0, again.stderr
    history = system.get("/snapshots/pg-cancel-1/history").json()["events"]
    assert [e["type"] for e in history].count("SnapshotCancelled") == 1


def test_cancelling_a_snapshot_that_is_not_creating_is_rejected(deployment):
    system, _ = deployment
    assert snapshotctl("create", "dws-small", "small-1", "--wait", env=system.env).returncode == 0
    refused = snapshotctl("cancel", "dws-small", "small-1", "--wait", env=system.env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("snapshotctl: rejected (snapshot_not_creating): ")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert system.get("/snapshots/small-1").json()["status"] == "Available"


async def test_a_service_killed_after_a_cancel_was_recorded_finishes_it_when_restarted(deployment):
    system, target = deployment
    sent = snapshotctl("create", "dws-big", "pg-crash-1", "--command-id", "create-pg-crash-1", env=system.env)
    assert sent.returncode == 0, sent.stderr
    service = system.processes["service"]
    await asyncio.to_thread(stop_the_dump, system)
    service.send_signal(signal.SIGSTOP)  # the worker holds still: it cannot see what follows
    for dump in pg_dumps_of(service.pid):
        os.kill(dump, signal.SIGCONT)  # the copy goes on (it outlives its worker, as after a crash)
    store = bootstrap.make_application(Settings(data_dir=system.data_dir, allowed_targets="*"))
    # The cancel as the intake records it: stored, but the copy has not stopped...
    assert store.handle("cancel-pg-crash-1", CancelSnapshotRequested(cluster_name="dws-big", snapshot_name="pg-crash-1"),
                        context=CommandContext(authtype="app_user", authid="e2e-admin")) == "accepted"
    store.close()
    system.kill("service")  # ...and the worker dies before it stopped the copy
    system.start_part("service", "service")

    cancelled = system.wait_for_api("/snapshots/pg-crash-1", lambda r: r.json()["status"] != "Creating", 120).json()
    assert cancelled["status"] == "Cancelled"
    assert pg_dump_sessions(target, settle_seconds=60) == 0  # the orphaned dump ended...
    assert not (system.data_dir / "snapshots" / "dws-big" / "pg-crash-1").exists()  # ...and left nothing
    writable(target)
    published = await everything_on_the_topic(system)
    ours = {e.id: e for e in published if e.data.get("snapshot_name") == "pg-crash-1"}.values()
    assert sorted((e.type, e.correlationid) for e in ours if e.type in ("SnapshotCancelled", "ClusterUnlocked")) == [
        ("ClusterUnlocked", "create-pg-crash-1"), ("SnapshotCancelled", "cancel-pg-crash-1")]
    recorded = [e["type"] for e in system.get("/snapshots/pg-crash-1/history").json()["events"]]
    assert (recorded.count("SnapshotCancelled"), recorded.count("ClusterUnlocked")) == (1, 1)
    assert system.get("/clusters/dws-big").json()["status"] == "Available"


async def everything_on_the_topic(system) -> list:
    class Topic:  # what everything_on_the_topic needs of settings
        kafka_bootstrap_servers, events_topic = system.bootstrap_servers, system.events_topic
    return await read_everything(Topic, settle=1.5)


def test_every_verb_speaks_json_and_a_retried_command_id_is_one_command(deployment):
    system, _ = deployment

    def run_json(*args: str):
        done = snapshotctl(*args, "--json", env=system.env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run_json("create", "dws-small", "json-1", "--wait", "--command-id", "cid-json-1")
    again = run_json("create", "dws-small", "json-1", "--wait", "--command-id", "cid-json-1")  # a retry
    assert first["state"] == again["state"] == "accepted" and first["events"] == again["events"]
    assert [e["type"] for e in first["events"]][-2:] == ["SnapshotCompleted", "ClusterUnlocked"]
    listed = run_json("list", "--name", "JSON", "--type", "Manual", "--sort", "started")
    assert [s["name"] for s in listed["snapshots"]] == ["json-1"]
    assert run_json("describe", "json-1")["status"] == "Available"
    history = run_json("history", "dws-small")["events"]
    assert [e["type"] for e in history if e["data"].get("snapshot_name") == "json-1"].count("SnapshotStarted") == 1
    assert {e["actor"]["authid"] for e in history if e["correlationid"] == "cid-json-1"} == {"e2e-admin"}
    assert run_json("history", "dws-small", "--snapshot", "json-1")["events"][0]["type"] == "ClusterLocked"
    text = snapshotctl("history", "dws-small", "--snapshot", "json-1", env=system.env).stdout
    assert "SnapshotCompleted" in text and "by e2e-admin" in text
    assert "dws-small" in {c["name"] for c in run_json("clusters")["clusters"]}
    assert run_json("create", "dws-small", "json-2")["command_id"]  # without --wait: the id
    assert run_json("delete", "dws-small", "json-1", "--wait")["events"][0]["type"] == "SnapshotDeleted"
    over_kafka = snapshotctl("create", "dws-small", "kafka-1", "--wait", "--via", "kafka", env=system.env)
    assert over_kafka.returncode == 0, over_kafka.stderr
    assert "progress kafka-1: 100.0 %" in over_kafka.stdout  # the events themselves, as plain lines
