"""The HTTP API and `snapshotctl` against the running system."""

import signal
import sqlite3
import subprocess
import sys
import time
import uuid

from tests.e2e.system import ROOT, snapshotctl


def test_snapshotctl_create_wait_shows_progress_and_exits_zero(system):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    done = snapshotctl("create", "dws-e2e", name, "--description", "from the CLI", "--wait", env=system.env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [word for line in lines[1:] for word in line.split()[1:2]] == [
        "ClusterLocked", "SnapshotStarted", "ClusterReadOnly", "SnapshotCompleted", "ClusterUnlocked"]


def test_snapshotctl_create_wait_exits_non_zero_with_the_reason_on_rejection(system):
    done = snapshotctl("create", "dws-e2e", "x!", "--wait", env=system.env)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "invalid_snapshot_name" in done.stderr


def test_snapshotctl_list_and_clusters_print_tables_from_the_api(system):
    name = f"listed-{uuid.uuid4().hex[:6]}"
    assert snapshotctl("create", "dws-e2e", name, "--wait", env=system.env).returncode == 0
    system.wait_for_api(f"/snapshots/{name}", lambda r: r.status_code == 200)
    listed = snapshotctl("list", "--cluster", "dws-e2e", env=system.env)
    assert listed.returncode == 0 and name in listed.stdout
    clusters = snapshotctl("clusters", env=system.env)
    assert clusters.returncode == 0 and "dws-e2e" in clusters.stdout


def test_the_snapshot_list_is_newest_first_filterable_and_paginated(system):
    names = [f"page-{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
    for name in names:
        assert snapshotctl("create", "dws-e2e", name, "--wait", env=system.env).returncode == 0
    system.wait_for_api(f"/snapshots/{names[-1]}", lambda r: r.status_code == 200 and r.json()["status"] == "Available")
    first_two = system.get("/snapshots", cluster="dws-e2e", status="Available", limit=2).json()
    assert [s["name"] for s in first_two["snapshots"]] == [names[2], names[1]]
    assert first_two["count"] >= 3
    third = system.get("/snapshots", cluster="dws-e2e", status="Available", limit=1, offset=2).json()
    assert third["snapshots"][0]["name"] == names[0]


def test_the_api_answers_404_and_422_with_a_reason(system):
    missing = system.get("/snapshots/no-such-snapshot")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    assert system.get("/clusters/no-such-cluster").status_code == 404
    assert system.get("/snapshots", status="Broken").status_code == 422
    assert system.get("/snapshots", limit=0).status_code == 422
    health = system.get("/health").json()
    assert health["status"] == "ok" and health["set_aside"]["count"] == 0


def test_clusters_are_listed_with_their_status_and_password_free_target(system):
    clusters = system.get("/clusters", status="Available").json()["clusters"]
    demo = next(c for c in clusters if c["name"] == "dws-e2e")
    assert (demo["driver"], demo["task_status"], demo["target"]) == ("sqlite", None, str(system.warehouse))


def test_replay_rebuilds_the_views_that_the_api_serves(system):
    before = system.get("/snapshots", limit=1000).json()
    done = snapshotctl("replay", env=system.env)
    assert done.returncode == 0, done.stderr
    assert system.get("/snapshots", limit=1000).json() == before


def test_snapshotctl_watch_follows_status_events_live_until_ctrl_c(system):
    watcher = subprocess.Popen([sys.executable, "-m", "services.snapshots", "watch"], env=system.env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # let it reach the end of the topic
        name = f"watched-{uuid.uuid4().hex[:6]}"
        assert snapshotctl("create", "dws-e2e", name, "--wait", env=system.env).returncode == 0
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("ClusterUnlocked" in line and name in line for line in seen):
            seen.append(watcher.stdout.readline())
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(15)
    assert any("SnapshotCompleted" in line and name in line for line in seen), seen
    assert code == 0


def test_a_sqlite_snapshot_is_restored_into_a_new_cluster_and_deleted(system):
    name = f"rs-{uuid.uuid4().hex[:6]}"
    assert snapshotctl("create", "dws-e2e", name, "--wait", env=system.env).returncode == 0
    with sqlite3.connect(system.warehouse) as db:
        at_snapshot = db.execute("SELECT * FROM sales ORDER BY id").fetchall()
        db.execute("DELETE FROM sales WHERE id % 2 = 0")
    copy_name = f"dws-{name}"
    restored = snapshotctl("restore", "dws-e2e", name, copy_name, "--wait", env=system.env)
    assert restored.returncode == 0, restored.stderr
    copy = system.wait_for_api(f"/clusters/{copy_name}", lambda r: r.status_code == 200).json()
    with sqlite3.connect(copy["target"]) as db:
        assert db.execute("SELECT * FROM sales ORDER BY id").fetchall() == at_snapshot
    history = system.wait_for_api(f"/snapshots/{name}/history",
                                  lambda r: r.json()["events"][-1]["type"] == "RestoreCompleted").json()["events"]
    assert [e["type"] for e in history][-2:] == ["RestoreStarted", "RestoreCompleted"]
    assert snapshotctl("delete", "dws-e2e", name, "--wait", env=system.env).returncode == 0
    system.wait_for_api(f"/snapshots/{name}", lambda r: r.status_code == 404)
