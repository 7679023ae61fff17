"""A running system whose clock the test moves (clock.py), for the policy e2e tests."""

import time
import uuid
from datetime import datetime

from events.kafka import ensure_topics
from services.snapshots.clock import set_test_clock
from services.snapshots.demo import create_demo_warehouse
from tests.e2e.system import RunningSystem


async def start_clocked_system(broker, data_dir, start: datetime, parts=("service", "projection", "api"),
                               **settings) -> RunningSystem:
    """Its own topics and consumer group (the session's system may run beside it), a
    scheduler ticking every 0.3 s, the time read from `data_dir/clock`."""
    suffix = uuid.uuid4().hex[:8]
    clock = data_dir / "clock"
    set_test_clock(clock, start)
    system = RunningSystem(broker.bootstrap_servers, data_dir, service_id=f"pol-{suffix}",
                           commands_topic=f"pol.commands.{suffix}", events_topic=f"pol.events.{suffix}",
                           dlq_topic=f"pol.dlq.{suffix}", scheduler_interval_seconds="0.3",
                           reconcile_interval_seconds="2", test_clock_file=str(clock),
                           broker_session_timeout_seconds="6", **settings)
    system.clock = clock
    await ensure_topics(broker.bootstrap_servers, 3, [system.commands_topic, system.events_topic,
                                                      system.env["SNAPSHOT_DLQ_TOPIC"]])
    system.start(parts)
    return system


async def register_sqlite_cluster(system: RunningSystem, name: str) -> None:
    warehouse = system.data_dir / f"{name}.sqlite"
    create_demo_warehouse(warehouse, 50, 500)
    command_id = await system.send("RegisterCluster", {"cluster_name": name, "driver": "sqlite",
                                                       "target": str(warehouse)})
    await system.events_of(command_id, "ClusterRegistered", timeout=90)
    system.wait_for_api(f"/clusters/{name}", lambda r: r.status_code == 200, timeout=60)


def set_time(system: RunningSystem, moment: datetime) -> None:
    set_test_clock(system.clock, moment)


def history(system: RunningSystem, cluster: str) -> list[dict]:
    return system.get(f"/clusters/{cluster}/history").json()["events"]


def wait_for_event(system: RunningSystem, cluster: str, check, timeout: float = 90.0) -> dict:
    """The first event of the cluster's history that passes `check`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in history(system, cluster) if check(e)]
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no such event of {cluster} within {timeout} s; history: "
                         f"{[(e['type'], e['data']) for e in history(system, cluster)][-15:]}")


def slot_outcomes(events: list[dict], cluster: str) -> dict[str, list[str]]:
    """For each slot (yyyymmddhhmm): what happened to it, in order: `started` for its
    snapshot's SnapshotStarted, the reason of each ScheduledSnapshotSkipped."""
    outcomes: dict[str, list[str]] = {}
    prefix = f"auto-{cluster[:46]}-"
    for event in events:
        name = event["data"].get("snapshot_name") or ""
        if event["type"] == "SnapshotStarted" and name.startswith(prefix):
            outcomes.setdefault(name[len(prefix):], []).append("started")
        elif event["type"] == "ScheduledSnapshotSkipped":
            slot = datetime.fromisoformat(event["data"]["slot"])
            outcomes.setdefault(f"{slot:%Y%m%d%H%M}", []).append(event["data"]["reason"])
    return outcomes
