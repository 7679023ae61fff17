"""The proof of "never frozen, never wrong" against the real parts: the embedded broker,
TWO `snapshotctl service` processes in one consumer group on a PostgreSQL event store, the
projection and the API; several PostgreSQL clusters big enough that pg_dump takes a
while; a client session holding an aborted write transaction; kill -9 of one service, then
of both, and a restart. Afterwards every cluster is writable and Available, every command
has exactly one outcome, every Available snapshot restores row-identical, and no event was
published twice beyond one relay batch per kill."""

import asyncio
import collections
import time
import uuid

import psycopg
import pytest
from psycopg import errors

from events.kafka import ensure_topics
from tests.conftest import POSTGRES, postgres_dsn
from tests.e2e.system import RunningSystem
from tests.integration.test_one_relay import everything_on_the_topic

CLUSTERS = 3
RELAY_BATCH = 20


def make_database(name: str, rows: int) -> str:
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    target = postgres_dsn(name)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE facts (id bigint PRIMARY KEY, region int, amount numeric, note text)")
        db.execute("INSERT INTO facts SELECT g, g %% 97, g * 1.5, md5(g::text) FROM generate_series(1, %s) g",
                   (rows,))
    return target


def checksum(target: str) -> tuple:
    with psycopg.connect(target) as db:
        return db.execute("SELECT count(*), md5(string_agg(f::text, ',' ORDER BY id)) FROM facts f").fetchone()


@pytest.fixture
def deployment(broker, tmp_path, postgres_database):
    suffix = uuid.uuid4().hex[:8]
    system = RunningSystem(broker.bootstrap_servers, tmp_path, event_store="postgres",
                           postgres_dsn=postgres_dsn(postgres_database), service_id=f"two-{suffix}",
                           commands_topic=f"two.commands.{suffix}", events_topic=f"two.events.{suffix}",
                           dlq_topic=f"two.dlq.{suffix}", relay_batch_size=str(RELAY_BATCH),
                           freeze_lock_timeout_seconds="2", reconcile_interval_seconds="3",
                           copy_threads="1")  # one dump at a time: the last is still to come at the kill
    clusters = {f"dws-two-{i}-{suffix}": make_database(f"dws_two_{i}_{suffix}", 600_000) for i in range(CLUSTERS)}
    yield system, clusters
    system.stop()
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        for name in [t.rsplit("/", 1)[1] for t in clusters.values()] + [f"{n}-copy" for n in clusters]:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settled(events: list, command_ids: list[str]) -> dict[str, int]:
    """For each command: how many outcomes it has on the topic (distinct events)."""
    outcomes = collections.Counter(e.correlationid for e in {e.id: e for e in events}.values()
                                   if e.type in ("ClusterUnlocked", "CommandRejected", "ClusterRegistered",
                                                 "RestoreCompleted", "RestoreFailed"))
    return {command_id: outcomes[command_id] for command_id in command_ids}


async def wait_until_settled(system, command_ids, timeout: float = 180) -> list:
    deadline = time.monotonic() + timeout
    while True:
        events = await everything_on_the_topic_of(system)
        counts = settled(events, command_ids)
        if all(counts.values()) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(2)


async def everything_on_the_topic_of(system):
    class Topic:  # what everything_on_the_topic needs of settings
        kafka_bootstrap_servers, events_topic = system.bootstrap_servers, system.events_topic
    return await everything_on_the_topic(Topic, settle=1.0)


async def test_two_instances_kills_and_an_aborted_writer_leave_every_cluster_writable_and_right(deployment):
    system, clusters = deployment
    await ensure_topics(system.bootstrap_servers, 3, [system.commands_topic, system.events_topic,
                                                      system.env["SNAPSHOT_DLQ_TOPIC"]])
    system.start(parts=("projection", "api"))
    system.start_part("service-1", "service")
    system.start_part("service-2", "service")
    registrations = [await system.send("RegisterCluster", {"cluster_name": name, "driver": "postgres",
                                                           "target": target}) for name, target in clusters.items()]
    await wait_until_settled(system, registrations, timeout=90)

    first = list(clusters)
    holder = psycopg.connect(clusters[first[0]])  # wrote before the snapshot, still idle in its transaction
    holder.execute("INSERT INTO facts VALUES (-3, 0, 0, 'uncommitted')")
    wave = [await system.send("CreateSnapshotRequested", {"cluster_name": name, "snapshot_name": f"w1-{name}"})
            for name in first]
    await system.events_of(wave[-1], "ClusterReadOnly", timeout=60)
    aborted = psycopg.connect(clusters[first[-1]])  # a client whose write hits the freeze...
    with pytest.raises(errors.ReadOnlySqlTransaction):
        aborted.execute("INSERT INTO facts VALUES (-1, 0, 0, 'refused')")
    # ...and stays "idle in transaction (aborted)". (PostgreSQL releases an aborted
    # transaction's locks at the error, so this one holds none; `holder` does.)
    system.kill("service-1")
    await asyncio.sleep(3)
    system.kill("service-2")
    system.start_part("service-1", "service")
    events = await wait_until_settled(system, wave)
    holder.rollback()
    holder.close()
    held = [e for e in {e.id: e for e in events}.values() if e.correlationid == wave[0]]
    assert "lock timeout" in next(e.data["reason"] for e in held if e.type == "SnapshotFailed")

    second = [await system.send("CreateSnapshotRequested", {"cluster_name": name, "snapshot_name": f"w2-{name}"})
              for name in first]
    second.append(second[0])  # a re-sent command id has no second effect
    await system.send("CreateSnapshotRequested", {"cluster_name": first[0], "snapshot_name": f"w2-{first[0]}"},
                      command_id=second[0])
    events = await wait_until_settled(system, second + wave)
    aborted.close()

    outcomes = settled(events, registrations + wave + second[:-1])
    assert set(outcomes.values()) == {1}, f"commands without exactly one outcome: {outcomes}"
    for name, target in clusters.items():
        with psycopg.connect(target, autocommit=True) as db:  # writable by a new session
            db.execute("INSERT INTO facts VALUES (-2, 0, 0, 'after') ON CONFLICT DO NOTHING")
            db.execute("DELETE FROM facts WHERE id = -2")
        cluster = system.wait_for_api(f"/clusters/{name}", lambda r: r.status_code == 200
                                      and r.json()["task_status"] is None, 30).json()
        assert cluster["status"] == "Available"
    duplicates = len(events) - len({e.id for e in events})
    assert duplicates <= RELAY_BATCH * 2, f"{duplicates} events published twice"

    available = [s for s in system.get("/snapshots", limit=100).json()["snapshots"] if s["status"] == "Available"]
    assert available, "no snapshot completed"
    for snapshot in available[:2]:
        copy = f"{snapshot['cluster_name']}-copy"
        restore = await system.send("RestoreSnapshotRequested", {"cluster_name": snapshot["cluster_name"],
                                    "snapshot_name": snapshot["name"], "target_cluster_name": copy})
        done = await system.events_of(restore, "RestoreCompleted", timeout=120)
        assert done[-1].type == "RestoreCompleted"
        restored = system.wait_for_api(f"/clusters/{copy}", lambda r: r.status_code == 200, 30).json()
        assert checksum(restored["target"]) == checksum(clusters[snapshot["cluster_name"]])
    unique_events = {e.id: e for e in events}.values()
    last = [e for e in unique_events if e.correlationid == wave[-1] and e.type.startswith("Snapshot")]
    resumed = sum(system.log(part).count("resuming snapshot") for part in ("service-1", "service-2"))
    print(f"\nresumed {resumed} workflows; the aborted writer's cluster: {[(e.type, e.data.get('reason')) for e in last]}")
    print(f"two instances: {len(wave) + len(second) - 1} snapshot commands, "
          f"{sum(e.type == 'SnapshotCompleted' for e in {e.id: e for e in events}.values())} completed, "
          f"{sum(e.type == 'SnapshotFailed' for e in {e.id: e for e in events}.values())} failed, "
          f"{sum(e.type == 'CommandRejected' for e in {e.id: e for e in events}.values())} rejected, "
          f"{duplicates} duplicate deliveries, {len(available)} Available")
