"""Two `snapshotctl service` instances in one consumer group on a PostgreSQL event store,
three clusters with hourly policies (spread over the partitions, so both instances fire
slots), one instance killed -9 and restarted between slots: every slot of every cluster
has exactly one outcome, its Automated snapshot."""

from datetime import datetime, timedelta, timezone

from tests.conftest import postgres_dsn
from tests.e2e.policy_system import (history, register_sqlite_cluster, set_time, slot_outcomes,
                                     start_clocked_system)
from tests.e2e.system import snapshotctl

START = datetime(2026, 6, 1, 8, 30, tzinfo=timezone.utc)
CLUSTERS = [f"dws-twopol-{i}" for i in (0, 2, 5)]  # on partitions 1, 0 and 2 of 3: both instances own some


def slot(hours: int) -> datetime:
    return START.replace(minute=0) + timedelta(hours=hours)


def all_available(system, hours: int) -> bool:
    names = {f"auto-{c}-{slot(hours):%Y%m%d%H%M}" for c in CLUSTERS}
    listed = system.get("/snapshots", status="Available", limit=1000).json()["snapshots"]
    return names <= {s["name"] for s in listed}


async def test_two_instances_fire_each_slot_of_each_cluster_once(broker, tmp_path, postgres_database):
    system = await start_clocked_system(broker, tmp_path, START, parts=("projection", "api"),
                                        event_store="postgres", postgres_dsn=postgres_dsn(postgres_database))
    try:
        system.start_part("service-1", "service")
        system.start_part("service-2", "service")
        for name in CLUSTERS:
            await register_sqlite_cluster(system, name)
            done = snapshotctl("policy", "set", name, "--schedule", "rate(1 hour)", "--keep-days", "3",
                               env=system.env)
            assert done.returncode == 0, done.stderr
        for hours in (1, 2, 3, 4):
            set_time(system, slot(hours) + timedelta(seconds=2))
            if hours == 2:
                system.kill("service-1")      # the other takes its partitions over
            if hours == 3:
                system.start_part("service-1", "service")
            system.wait_for_api("/snapshots", lambda r: all_available(system, hours), timeout=120)
        set_time(system, slot(4) + timedelta(minutes=30))
        for name in CLUSTERS:
            outcomes = slot_outcomes(history(system, name), name)
            assert outcomes == {f"{slot(h):%Y%m%d%H%M}": ["started"] for h in (1, 2, 3, 4)}, name
        fired = [sum("TakeScheduledSnapshot" in line and "accepted" in line
                     for line in system.log(part).splitlines()) for part in ("service-1", "service-2")]
        print(f"\nslots fired by service-1, service-2: {fired}")
        assert sum(fired) == len(CLUSTERS) * 4 and all(fired)
    finally:
        system.stop()
