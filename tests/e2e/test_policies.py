"""Policies and retention against the real processes (one system for the module): the CLI
and HTTP of policies, slots fired exactly once with the service killed -9 and restarted
around slot boundaries, only the latest slot after downtime, skipped slots in the
cluster's history, expiry deleting exactly the expired snapshots once, and an Automated
snapshot refused to a user. The service's clock is a file the test moves."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.policy_system import (history, register_sqlite_cluster, set_time, slot_outcomes,
                                     start_clocked_system, wait_for_event)
from tests.e2e.system import snapshotctl

CLUSTER = "dws-policy-1"
DAY1 = datetime(2026, 4, 1, tzinfo=timezone.utc)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 0) -> datetime:
    return DAY1 + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def auto(slot: datetime) -> str:
    return f"auto-{CLUSTER}-{slot:%Y%m%d%H%M}"


@pytest.fixture(scope="module")
async def clocked(broker, tmp_path_factory):
    system = await start_clocked_system(broker, tmp_path_factory.mktemp("policies"), at(10, 30))
    try:
        await register_sqlite_cluster(system, CLUSTER)
        yield system
    finally:
        system.stop()


def available(system, name: str, timeout: float = 90.0) -> dict:
    return system.wait_for_api(f"/snapshots/{name}", lambda r: r.status_code == 200
                               and r.json()["status"] == "Available", timeout).json()


def test_a_policy_is_set_shown_and_refused_when_invalid_through_the_cli(clocked):
    env = clocked.env
    bad = snapshotctl("policy", "set", CLUSTER, "--schedule", "rate(1 hour)", "--keep-days", "40", env=env)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "invalid_policy" in bad.stderr
    bad = snapshotctl("policy", "set", CLUSTER, "--schedule", "61 * * * *", "--keep-days", "1", env=env)
    assert bad.returncode == 1 and "invalid_policy" in bad.stderr
    done = snapshotctl("policy", "set", CLUSTER, "--schedule", "rate(1 hour)", "--keep-days", "1",
                       "--command-id", "policy-e2e-1", env=env)
    assert done.returncode == 0, done.stderr
    assert "SnapshotPolicySet" in done.stdout
    shown = snapshotctl("policy", "show", CLUSTER, "--json", env=env)
    assert '"schedule": "rate(1 hour)"' in shown.stdout and '"keep_days": 1' in shown.stdout
    assert clocked.get(f"/clusters/{CLUSTER}").json()["policy"] == {"schedule": "rate(1 hour)", "keep_days": 1}
    scraped = clocked.request("GET", "/metrics").text
    assert f'dws_snapshots_policy_interval_seconds{{cluster="{CLUSTER}"}} 3600.0' in scraped
    viewer = clocked.create_token("policy-viewer", "viewer")
    refused = clocked.request("PUT", f"/clusters/{CLUSTER}/policy", token=viewer,
                              json={"schedule": "rate(1 hour)", "keep_days": 2})
    assert refused.status_code == 403
    # The 10:00 slot came before the policy (set at 10:30): nothing is taken for it.
    assert slot_outcomes(history(clocked, CLUSTER), CLUSTER) == {}


def test_each_slot_fires_once_with_the_service_killed_around_the_slot_boundary(clocked):
    set_time(clocked, at(10, 59, 58))
    clocked.kill("service")
    set_time(clocked, at(11, 0, 1))          # the slot begins while no service runs
    clocked.start_part("service", "service")
    wait_for_event(clocked, CLUSTER, lambda e: e["type"] == "ClusterLocked"
                   and e["data"]["snapshot_name"] == auto(at(11)))
    clocked.kill("service")                  # killed during (or just after) the slot's snapshot
    clocked.start_part("service", "service")
    snapshot = available(clocked, auto(at(11)))
    assert (snapshot["snapshot_type"], snapshot["retention_days"]) == ("Automated", 1)
    assert snapshot["started_at"].startswith("2026-04-01T11:00:0")  # the service's clock
    assert snapshot["expires_at"] == (datetime.fromisoformat(snapshot["started_at"]) + timedelta(days=1)).isoformat()
    clocked.kill("service")
    clocked.start_part("service", "service")  # a third start in the same slot
    set_time(clocked, at(11, 30))
    started = wait_for_event(clocked, CLUSTER, lambda e: e["type"] == "SnapshotStarted")
    assert started["actor"]["authtype"] == "system"
    # Down from 11:30 to 14:20: 12:00, 13:00 and 14:00 were missed; only 14:00 is taken.
    clocked.kill("service")
    set_time(clocked, at(14, 20))
    clocked.start_part("service", "service")
    available(clocked, auto(at(14)))
    set_time(clocked, at(14, 40))
    outcomes = slot_outcomes(history(clocked, CLUSTER), CLUSTER)
    assert outcomes == {"202604011100": ["started"], "202604011400": ["started"]}


def test_a_slot_that_finds_the_cluster_not_ready_or_its_name_taken_is_recorded_skipped(clocked):
    asyncio.run(clocked.send("ReportClusterStatus", {"cluster_name": CLUSTER, "status": "Unavailable"}))
    clocked.wait_for_api(f"/clusters/{CLUSTER}", lambda r: r.json()["status"] == "Unavailable")
    set_time(clocked, at(15, 0, 5))
    skipped = wait_for_event(clocked, CLUSTER, lambda e: e["type"] == "ScheduledSnapshotSkipped")
    assert skipped["data"] == {"cluster_name": CLUSTER, "slot": "2026-04-01T15:00:00+00:00",
                               "reason": "cluster_not_ready"}
    assert skipped["actor"]["authtype"] == "system"
    asyncio.run(clocked.send("ReportClusterStatus", {"cluster_name": CLUSTER, "status": "Available"}))
    clocked.wait_for_api(f"/clusters/{CLUSTER}", lambda r: r.json()["status"] == "Available")
    taken = snapshotctl("create", CLUSTER, auto(at(16)), "--wait", env=clocked.env)
    assert taken.returncode == 0, taken.stderr
    set_time(clocked, at(16, 0, 5))
    wait_for_event(clocked, CLUSTER, lambda e: e["type"] == "ScheduledSnapshotSkipped"
                   and e["data"]["reason"] == "duplicate_snapshot_name")
    outcomes = slot_outcomes(history(clocked, CLUSTER), CLUSTER)
    assert outcomes["202604011500"] == ["cluster_not_ready"]
    assert outcomes["202604011600"] == ["started", "duplicate_snapshot_name"]  # the manual one's start


def test_expiry_deletes_exactly_the_expired_snapshots_once_and_users_cannot_delete_automated_ones(clocked):
    env = clocked.env
    refused = snapshotctl("delete", CLUSTER, auto(at(11)), "--wait", env=env)
    assert refused.returncode == 1 and "snapshot_automated" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    refused = snapshotctl("delete", CLUSTER, auto(at(11)), "--via", "kafka", "--wait", env=env)
    assert refused.returncode == 1 and "snapshot_automated" in refused.stderr
    for name, days in (("manual-keep-1", "1"), ("manual-forever", "-1")):
        done = snapshotctl("create", CLUSTER, name, "--retention-days", days, "--wait", env=env)
        assert done.returncode == 0, done.stderr
    assert available(clocked, "manual-keep-1")["retention_days"] == 1
    forever = available(clocked, "manual-forever")
    assert (forever["retention_days"], forever["expires_at"]) == (-1, None)
    bad = snapshotctl("create", CLUSTER, "manual-bad", "--retention-days", "0", env=env)
    assert bad.returncode == 1 and "invalid_command" in bad.stderr
    assert snapshotctl("policy", "remove", CLUSTER, env=env).returncode == 0  # no new slots below

    set_time(clocked, at(12, day=1))  # 11:00 of day 1 expired (keep 1 day); 14:00 not yet
    wait_for_event(clocked, CLUSTER, lambda e: e["type"] == "SnapshotDeleted")
    clocked.kill("service")                                  # and a restart changes nothing
    set_time(clocked, at(16, 30, day=1))  # now 14:00 and 16:00 (taken 16:00) and manual-keep-1
    clocked.start_part("service", "service")
    for name in (auto(at(14)), "manual-keep-1"):
        clocked.wait_for_api(f"/snapshots/{name}", lambda r: r.status_code == 404, 90)
    set_time(clocked, at(16, 35, day=1))
    listed = {s["name"] for s in clocked.get("/snapshots", cluster=CLUSTER).json()["snapshots"]}
    assert listed == {"manual-forever", auto(at(16))}  # the latter: the manual one of the skip test
    deletions = [e for e in history(clocked, CLUSTER) if e["type"] == "SnapshotDeleted"]
    assert sorted((e["data"]["snapshot_name"], e["data"]["reason"]) for e in deletions) == sorted(
        [(auto(at(11)), "expired"), (auto(at(14)), "expired"), ("manual-keep-1", "expired")])
    assert all(e["actor"]["authtype"] == "system" for e in deletions)
    for name in (auto(at(11)), auto(at(14)), "manual-keep-1"):
        assert not (clocked.data_dir / "snapshots" / CLUSTER / name).exists()
    assert (clocked.data_dir / "snapshots" / CLUSTER / "manual-forever").exists()
