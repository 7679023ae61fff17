"""End to end: the real `snapshotctl service` process on an event store in a private
PostgreSQL server that the test stops mid-stream. Commands sent while the store is down
wait in Kafka (the service pauses on the first, its offset uncommitted) and each get
exactly one outcome once it is back; none is dead-lettered; a service killed while paused
gets the command again."""

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.kafka import ensure_topics
from services.snapshots import bootstrap
from services.snapshots.settings import Settings
from tests.e2e.system import RunningSystem

OUTCOMES = {"ClusterRegistered", "ClusterStatusChanged", "ClusterRestarted", "SnapshotCompleted",
            "SnapshotFailed", "CommandRejected"}


@pytest.fixture
async def outage_system(broker, private_postgres, tmp_path):
    """A service process of its own (own topics and group) on the private server."""
    suffix = uuid.uuid4().hex[:8]
    system = RunningSystem(broker.bootstrap_servers, tmp_path, event_store="postgres",
                           postgres_dsn=private_postgres.create_database("snapshots"),
                           commands_topic=f"outage.commands.{suffix}", events_topic=f"outage.events.{suffix}",
                           dlq_topic=f"outage.dlq.{suffix}", service_id=f"outage-{suffix}",
                           allowed_targets="/data")  # the clusters are only registered
    # A store call waits this long for a connection, 10 times, before the service hears
    # of the outage and logs its pause (default 5 s): shorter, so the test is quick.
    system.env["POSTGRES_CONNECT_TIMEOUT"] = "1"
    system.dlq_topic = f"outage.dlq.{suffix}"
    await ensure_topics(broker.bootstrap_servers, 3, [system.commands_topic, system.events_topic, system.dlq_topic])
    system.start(["service"])
    try:
        await register(system, "dws-warm")  # the service consumes: its group is joined
        yield system
    finally:
        system.stop()


async def register(system: RunningSystem, name: str, command_id: str | None = None) -> str:
    command_id = await system.send("RegisterCluster", {"cluster_name": name, "driver": "sqlite",
                                                       "target": f"/data/{name}.sqlite"}, command_id)
    await system.events_of(command_id, "ClusterRegistered", timeout=120)
    return command_id


def wait_for_log(system: RunningSystem, text: str, timeout: float = 120) -> None:
    """Until the service logged `text` (the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + timeout
    while text not in system.log("service"):
        assert time.monotonic() < deadline, f"the service never logged {text!r}"
        time.sleep(0.1)


def outcomes_in_store(system: RunningSystem) -> dict[str, list[str]]:
    app = bootstrap.make_application(Settings(event_store="postgres", postgres_dsn=system.env["SNAPSHOT_POSTGRES_DSN"]))
    found: dict[str, list[str]] = {}
    try:
        for batch in app.notifications():
            for event in map(app.mapper.to_domain_event, batch):
                if type(event).__name__ in OUTCOMES:
                    found.setdefault(event.command_id, []).append(type(event).__name__)
    finally:
        app.close()
    return found


async def dlq_size(system: RunningSystem) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=system.bootstrap_servers)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(system.dlq_topic, p) for p in consumer.partitions_for_topic(system.dlq_topic)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_commands_sent_while_the_event_store_is_down_each_get_one_outcome_once_it_is_back(
        outage_system, private_postgres):
    system = outage_system
    private_postgres.stop("immediate")
    sent = {
        await system.send("RegisterCluster", {"cluster_name": "dws-new", "driver": "sqlite",
                                              "target": "/data/new.sqlite"}): "ClusterRegistered",
        await system.send("ReportClusterStatus", {"cluster_name": "dws-warm", "status": "Low performance"}):
            "ClusterStatusChanged",
        await system.send("RestartClusterRequested", {"cluster_name": "dws-none"}): "CommandRejected",
        await system.send("CreateSnapshotRequested", {"cluster_name": "dws-warm"}): "CommandRejected",
    }
    wait_for_log(system, "paused")
    private_postgres.start()
    for command_id, outcome in sent.items():
        await system.events_of(command_id, outcome, timeout=120)
    stored = outcomes_in_store(system)
    assert {command_id: stored.get(command_id) for command_id in sent} == \
        {command_id: [outcome] for command_id, outcome in sent.items()}
    assert await dlq_size(system) == 0
    assert "dead-lettered" not in system.log("service")


async def test_a_service_killed_while_paused_on_a_command_handles_it_after_a_restart(
        outage_system, private_postgres):
    system = outage_system
    private_postgres.stop("immediate")
    command_id = await system.send("RegisterCluster", {"cluster_name": "dws-paused", "driver": "sqlite",
                                                       "target": "/data/paused.sqlite"})
    wait_for_log(system, f"command {command_id} paused")
    system.kill("service")
    private_postgres.start()
    system.start(["service"])
    await system.events_of(command_id, "ClusterRegistered", timeout=120)
    assert outcomes_in_store(system)[command_id] == ["ClusterRegistered"]
    assert await dlq_size(system) == 0
