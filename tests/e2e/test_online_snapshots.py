"""Online snapshots of a real PostgreSQL database through the running processes: a writer
inserts all along; the cluster refuses writes only until pg_dump holds its snapshot, writes
go through while the copy goes on, and the restored copy holds exactly the rows committed
before the freeze. A worker SIGKILLed between the unlock and the outcome: the snapshot
fails cleanly, the cluster stays writable, nothing is left behind.

To hold the copy at a known point, the test stops pg_dump (SIGSTOP) once it holds its
locks, and lets it go on (SIGCONT) when it has looked at the system in that state."""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from events.kafka import ensure_topics
from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.system import ROOT, RunningSystem, snapshotctl
from tests.integration.test_postgres_online import dump_locks

TABLES = 2  # ticks, facts


@pytest.fixture
def online_cluster(system, postgres_database):
    """A database pg_dump needs seconds for, with the writer's table `ticks`."""
    name = f"dws-on-{uuid.uuid4().hex[:6]}"
    target = postgres_dsn(postgres_database)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        db.execute("CREATE TABLE facts AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS body "
                   "FROM generate_series(1, 1500000) g")
    yield name, target
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}-copy" WITH (FORCE)')


def register(system, name: str, target: str) -> None:
    done = snapshotctl("register-cluster", name, "--driver", "postgres", "--target", target, env=system.env)
    assert done.returncode == 0, done.stderr


class Writer(threading.Thread):
    """Inserts one row at a time (autocommit) until stopped; logs each outcome in order."""

    def __init__(self, target: str):
        super().__init__(daemon=True)
        self._target, self.log, self.stopped = target, [], threading.Event()

    def run(self) -> None:
        with psycopg.connect(self._target, autocommit=True) as db:
            while not self.stopped.is_set():
                try:
                    self.log.append(("committed", db.execute("INSERT INTO ticks DEFAULT VALUES RETURNING id").fetchone()[0]))
                except psycopg.errors.ReadOnlySqlTransaction:
                    self.log.append(("refused", None))
                time.sleep(0.002)

    def committed(self) -> list[int]:
        return [i for outcome, i in list(self.log) if outcome == "committed"]

    def wait_for_commits(self, more: int, timeout: float = 30) -> None:
        wanted, deadline = len(self.committed()) + more, time.monotonic() + timeout
        while len(self.committed()) < wanted:
            assert time.monotonic() < deadline, f"the writer could not commit {more} rows"
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


def online_pg_dump(database: str) -> int | None:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"pg_dump") and any(a.startswith(b"--snapshot=") for a in args) \
                and any(a.startswith(b"--dbname=") and database.encode() in a for a in args):
            return int(cmdline.parent.name)
    return None


def pause_dump_once_it_holds_its_locks(target: str, timeout: float = 60) -> int:
    database, deadline = target.rsplit("/", 1)[1], time.monotonic() + timeout
    while (pid := online_pg_dump(database)) is None or dump_locks(target) < TABLES:
        assert time.monotonic() < deadline, "pg_dump never held its locks"
        time.sleep(0.005)
    os.kill(pid, signal.SIGSTOP)
    return pid


def sent_command_id(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("sent "))


def test_online_is_refused_for_a_sqlite_cluster(system):
    refused = snapshotctl("create", "dws-e2e", "online-lite", "--online", "--wait", env=system.env)
    assert refused.returncode != 0
    assert "invalid_command" in refused.stderr and "need a postgres cluster" in refused.stderr


async def test_an_online_snapshot_is_the_database_as_of_the_freeze_and_writes_go_on_during_the_copy(
        system, online_cluster):
    cluster, target = online_cluster
    register(system, cluster, target)
    writer = Writer(target)
    writer.start()
    writer.wait_for_commits(20)
    create = subprocess.Popen([sys.executable, "-m", "services.snapshots", "create", cluster, "online-1",
                               "--online", "--wait"], env=system.env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    pid = await asyncio.to_thread(pause_dump_once_it_holds_its_locks, target)
    try:
        # The copy is held mid-way: the cluster is writable, the task goes on.
        row = await asyncio.to_thread(system.wait_for_api, f"/clusters/{cluster}",
                                      lambda r: r.json()["status"] == "Available")
        assert row.json()["task_status"] == "Creating snapshot"
        assert system.get("/snapshots/online-1").json()["status"] == "Creating"
        await asyncio.to_thread(writer.wait_for_commits, 20)
        restart = await system.send("RestartClusterRequested", {"cluster_name": cluster})
        [rejection] = await system.events_of(restart, "CommandRejected")
        assert rejection.data["code"] == "snapshot_in_progress"
        other = await asyncio.to_thread(snapshotctl, "create", cluster, "online-2", "--wait", env=system.env)
        assert other.returncode != 0 and "snapshot_in_progress" in other.stderr
        assert create.poll() is None  # `create --wait` waits for the outcome, not the unlock
    finally:
        os.kill(pid, signal.SIGCONT)
    stdout, stderr = await asyncio.to_thread(create.communicate, timeout=300)
    writer.stop()
    assert create.returncode == 0, stderr
    assert stdout.index("ClusterUnlocked") < stdout.index("SnapshotCompleted")

    events = await system.events_of(sent_command_id(stdout), "SnapshotCompleted")
    assert [e.type for e in events] == ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly",
                                        "ClusterUnlocked", "SnapshotCompleted"]
    read_only, unlocked, completed = events[2].time, events[3].time, events[4].time
    print(f"\nonline snapshot: read-only for {(unlocked - read_only).total_seconds():.3f} s "
          f"of a {(completed - read_only).total_seconds():.3f} s copy")
    system.wait_for_api(f"/clusters/{cluster}", lambda r: r.json()["task_status"] is None)

    restored = await asyncio.to_thread(snapshotctl, "restore", cluster, "online-1", f"{cluster}-copy",
                                       "--wait", env=system.env, timeout=300)
    assert restored.returncode == 0, restored.stderr
    copy = system.wait_for_api(f"/clusters/{cluster}-copy", lambda r: r.status_code == 200).json()["target"]
    with psycopg.connect(copy) as db:
        in_copy = [i for (i,) in db.execute("SELECT id FROM ticks ORDER BY id")]

    # Exactly the rows committed before the freeze: every committed row up to the copy's
    # last, none after it, and between that row and the next commit the writer was refused
    # (the freeze): the cut is the freeze, not some later moment of the copy.
    log, committed = writer.log, writer.committed()
    assert in_copy == [i for i in committed if i <= in_copy[-1]]
    last = log.index(("committed", in_copy[-1]))
    next_commit = next(n for n in range(last + 1, len(log)) if log[n][0] == "committed")
    assert ("refused", None) in log[last + 1:next_commit]
    assert all(outcome == "committed" for outcome, _ in log[next_commit:])  # never refused again
    assert len(committed) - len(in_copy) >= 20  # the writes made while the copy was held


@pytest.fixture
async def own_system(broker, tmp_path):
    """A service of its own, to be SIGKILLed without disturbing the other tests. Its
    `pg_dump` waits for the file `pg_dump.go` before it starts (a wrapper first on PATH),
    so a test can hold a copy before the dump has its snapshot."""
    suffix = uuid.uuid4().hex[:6]
    running = RunningSystem(broker.bootstrap_servers, tmp_path, commands_topic=f"online.commands.{suffix}",
                            events_topic=f"online.events.{suffix}", dlq_topic=f"online.dlq.{suffix}",
                            service_id=f"online-{suffix}", reconcile_interval_seconds="2")
    gate, running.gate = tmp_path / "bin", tmp_path / "pg_dump.go"
    gate.mkdir()
    (gate / "pg_dump").write_text(f"#!/bin/sh\nwhile [ ! -e {running.gate} ]; do sleep 0.05; done\n"
                                  f'exec {shutil.which("pg_dump")} "$@"\n')
    (gate / "pg_dump").chmod(0o755)
    running.gate.touch()
    running.env["PATH"] = f"{gate}:{running.env['PATH']}"
    await ensure_topics(broker.bootstrap_servers, 3, [running.commands_topic, running.events_topic,
                                                      f"online.dlq.{suffix}"])
    yield running.start()
    running.stop()


async def test_a_worker_killed_during_an_online_copy_fails_the_snapshot_and_leaves_the_cluster_writable(
        own_system, online_cluster):
    system, (cluster, target) = own_system, online_cluster
    register(system, cluster, target)
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": cluster,
                                                               "snapshot_name": "online-crash", "online": True})
    pid = await asyncio.to_thread(pause_dump_once_it_holds_its_locks, target)
    await system.events_of(command_id, "ClusterUnlocked", timeout=60)
    system.kill("service")
    os.kill(pid, signal.SIGCONT)  # it was sent SIGTERM when the service died: it ends now
    for _ in range(100):
        if online_pg_dump(target.rsplit("/", 1)[1]) is None:
            break
        await asyncio.sleep(0.05)
    assert online_pg_dump(target.rsplit("/", 1)[1]) is None, "pg_dump outlived the service"
    with psycopg.connect(target, autocommit=True) as db:  # writable while no worker runs
        db.execute("INSERT INTO ticks DEFAULT VALUES")

    system.start_part("service", "service")
    events = await system.events_of(command_id, "SnapshotFailed", timeout=120)
    assert [e.type for e in events][-2:] == ["ClusterUnlocked", "SnapshotFailed"]
    assert "interrupted after the cluster was unlocked" in events[-1].data["reason"]
    row = system.wait_for_api(f"/clusters/{cluster}", lambda r: r.json()["task_status"] is None).json()
    assert row["status"] == "Available"
    system.wait_for_api("/snapshots/online-crash", lambda r: r.json()["status"] == "Failed")
    directory = system.data_dir / "snapshots" / cluster / "online-crash"
    for _ in range(100):
        if not directory.exists():
            break
        await asyncio.sleep(0.1)
    assert not directory.exists(), list(directory.rglob("*"))
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO ticks DEFAULT VALUES")
        for _ in range(100):  # the freeze's triggers are removed once no dump holds the tables
            if db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = '_dws_snapshot_freeze'").fetchone()[0] == 0:
                break
            await asyncio.sleep(0.1)
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = '_dws_snapshot_freeze'").fetchone()[0] == 0

    again = await system.send("CreateSnapshotRequested", {"cluster_name": cluster, "snapshot_name": "online-after",
                                                          "online": True})
    events = await system.events_of(again, "SnapshotCompleted", timeout=120)
    assert [e.type for e in events][-2:] == ["ClusterUnlocked", "SnapshotCompleted"]


async def test_a_worker_killed_before_the_dump_has_its_snapshot_resumes_the_online_copy_from_the_freeze(
        own_system, online_cluster):
    system, (cluster, target) = own_system, online_cluster
    register(system, cluster, target)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO ticks SELECT FROM generate_series(1, 10)")
    system.gate.unlink()  # the next pg_dump waits
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": cluster,
                                                               "snapshot_name": "online-resumed", "online": True})
    await system.events_of(command_id, "ClusterReadOnly", timeout=60)
    system.kill("service")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO ticks DEFAULT VALUES")  # still frozen: no dump holds the data yet

    system.gate.touch()
    system.start_part("service", "service")
    events = await system.events_of(command_id, "SnapshotCompleted", timeout=180)
    once = {e.id: e for e in events}.values()  # the relay re-sends at most a batch after a SIGKILL
    assert [e.type for e in once] == ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly",
                                      "ClusterUnlocked", "SnapshotCompleted"]
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("INSERT INTO ticks DEFAULT VALUES")
    restored = await asyncio.to_thread(snapshotctl, "restore", cluster, "online-resumed", f"{cluster}-copy",
                                       "--wait", env=system.env, timeout=300)
    assert restored.returncode == 0, restored.stderr
    copy = system.wait_for_api(f"/clusters/{cluster}-copy", lambda r: r.status_code == 200).json()["target"]
    with psycopg.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM ticks").fetchone()[0] == 10  # as of ClusterReadOnly
