"""An event-store outage pauses the intake instead of dead-lettering: the service's own
parts (built by `bootstrap.build_service`) on a private PostgreSQL server that the test
stops mid-stream, the DLQ on the real broker. Every command delivered while the store is
down gets exactly one outcome once it is back, and nothing reaches the DLQ."""

import asyncio
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.codec import command_envelope, encode
from events.commands import (CreateSnapshotRequested, RegisterCluster, ReportClusterStatus,
                             RestartClusterRequested)
from events.envelope import Envelope
from events.kafka import ensure_topics
from services.snapshots import bootstrap
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.settings import Settings

OUTCOMES = {"ClusterRegistered", "ClusterStatusChanged", "ClusterRestarted", "SnapshotCompleted",
            "SnapshotFailed", "CommandRejected"}


@pytest.fixture
async def service(broker, private_postgres, tmp_path, monkeypatch):
    # Each store call waits this long for a connection, 10 times, before the intake hears
    # of the outage (the service's default is 5 s): shorter, so the test is quick.
    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=broker.bootstrap_servers,
                        event_store="postgres", postgres_dsn=private_postgres.create_database("snapshots"),
                        dlq_topic=f"outage.dlq.{uuid.uuid4().hex[:8]}")
    await ensure_topics(broker.bootstrap_servers, 1, [settings.dlq_topic])
    parts = bootstrap.build_service(settings)
    yield parts, settings
    await parts.producer.stop()
    parts.app.close()
    parts.store.shutdown()


async def dlq_size(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.dlq_topic, 0)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def until(condition, what: str, timeout: float = 120) -> None:
    """Wait for a condition (the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


def outcomes_by_command(app) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for batch in app.notifications():
        for event in map(app.mapper.to_domain_event, batch):
            if type(event).__name__ in OUTCOMES:
                found.setdefault(event.command_id, []).append(type(event).__name__)
    return found


async def test_commands_delivered_while_the_event_store_is_down_each_get_one_outcome_and_none_is_dead_lettered(
        service, private_postgres, tmp_path, caplog):
    parts, settings = service
    warehouse = tmp_path / "dws-out.sqlite"
    create_demo_warehouse(warehouse, 50, 200)
    register = RegisterCluster(cluster_name="dws-out", driver="sqlite", target=str(warehouse))
    assert await parts.intake.receive(encode(command_envelope(register, id="reg"))) == "accepted"

    private_postgres.stop("immediate")
    deliveries = [encode(command_envelope(command, id=command_id)) for command_id, command in [
        ("snap", CreateSnapshotRequested(cluster_name="dws-out", snapshot_name="during-outage")),
        ("other", RegisterCluster(cluster_name="dws-two", driver="sqlite", target=str(tmp_path / "x.sqlite"))),
        ("status", ReportClusterStatus(cluster_name="dws-two", status="Low performance")),
        ("restart", RestartClusterRequested(cluster_name="dws-none")),
        ("reg", register)]]
    deliveries.append(Envelope(id="bad", type="CreateSnapshotRequested", data={"cluster_name": "x"})
                      .model_dump_json().encode())

    async def consume_in_order():
        return [await parts.intake.receive(raw) for raw in deliveries]

    with caplog.at_level(logging.WARNING, logger="services.snapshots.intake"):
        consuming = asyncio.create_task(consume_in_order())
        await until(lambda: parts.intake.pauses >= 2, "the intake pausing on the first command")
        private_postgres.start()
        outcomes = await consuming
        await parts.workflow.wait_idle()

    assert outcomes == ["accepted", "accepted", "accepted", "rejected", "duplicate", "rejected"]
    assert outcomes_by_command(parts.app) == {
        "reg": ["ClusterRegistered"], "snap": ["SnapshotCompleted"], "other": ["ClusterRegistered"],
        "status": ["ClusterStatusChanged"], "restart": ["CommandRejected"], "bad": ["CommandRejected"]}
    assert parts.intake.dead_lettered == 0 and await dlq_size(settings) == 0
    assert "command snap paused" in caplog.text
