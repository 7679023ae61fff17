"""End to end: commands published with aiokafka to the real service processes, status
events read back from the events topic, the snapshot list read from the HTTP API."""

import asyncio
import sqlite3
import uuid

from aiokafka import TopicPartition

from events import kafka
from events.events import TELEMETRY_EVENTS
from services.snapshots.client import EventFollower

SPEC_ORDER = ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly", "SnapshotCompleted", "ClusterUnlocked"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_snapshot_request_yields_the_spec_events_in_order_and_an_available_snapshot(system):
    name = unique("nightly")
    command_id = await system.send("CreateSnapshotRequested", {
        "cluster_name": "dws-e2e", "snapshot_name": name, "description": "before ETL"})
    events = await system.events_of(command_id, "ClusterUnlocked")
    assert [e.type for e in events] == SPEC_ORDER
    assert events[0].data == {"cluster_name": "dws-e2e", "snapshot_name": name,
                              "status": "Unavailable", "task_status": "Creating snapshot"}
    assert events[-1].data["status"] == "Available" and events[-1].data["task_status"] is None
    assert all(e.subject == "dws-e2e" for e in events)
    snapshot = system.wait_for_api(f"/snapshots/{name.upper()}",
                                   lambda r: r.status_code == 200 and r.json()["status"] == "Available").json()
    assert snapshot["size_bytes"] == events[3].data["size_bytes"] > 0
    assert snapshot["description"] == "before ETL" and snapshot["snapshot_type"] == "Manual"


async def test_the_snapshot_file_is_a_consistent_copy_of_the_cluster(system):
    name = unique("copy")
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": name})
    await system.events_of(command_id, "ClusterUnlocked")
    [copy] = (system.data_dir / "snapshots" / "dws-e2e" / name).glob("*/cluster.sqlite")  # one attempt
    with sqlite3.connect(copy) as snapshot, sqlite3.connect(system.warehouse) as cluster:
        assert snapshot.execute("SELECT * FROM sales ORDER BY id").fetchall() == \
            cluster.execute("SELECT * FROM sales ORDER BY id").fetchall()


async def test_each_refused_command_yields_exactly_one_rejection_with_its_code(system):
    cases = {
        "unknown_cluster": ("CreateSnapshotRequested", {"cluster_name": "dws-none", "snapshot_name": "abcd"}),
        "invalid_snapshot_name": ("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": "9lives"}),
        "invalid_description": ("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": "okay",
                                                            "description": "<script>"}),
        "invalid_command": ("CreateSnapshotRequested", {"cluster_name": "dws-e2e"}),
        "unknown_command_type": ("DropEverything", {"cluster_name": "dws-e2e"}),
        "secret_in_command": ("RegisterCluster", {"cluster_name": "dws-pg-1", "driver": "postgres",
                                                  "target": "postgresql://admin:s3cret@db/wh"}),
    }
    for code, (type_, data) in cases.items():
        command_id = await system.send(type_, data)
        events = await system.events_of(command_id, "CommandRejected")
        assert [(e.type, e.data["code"]) for e in events] == [("CommandRejected", code)], code
    assert "s3cret" not in system.log("service")


async def test_a_command_sent_twice_has_one_effect(system):
    name = unique("twice")
    data = {"cluster_name": "dws-e2e", "snapshot_name": name}
    command_id = await system.send("CreateSnapshotRequested", data)
    await system.send("CreateSnapshotRequested", data, command_id=command_id)
    fence = await system.send("RestartClusterRequested", {"cluster_name": "dws-none"}, key="dws-e2e")
    await system.events_of(fence, "CommandRejected")  # same partition: the duplicate was handled
    history = system.wait_for_api(f"/snapshots/{name}/history",
                                  lambda r: r.status_code == 200 and r.json()["events"][-1]["type"] == "ClusterUnlocked")
    assert [e["type"] for e in history.json()["events"]].count("SnapshotStarted") == 1


async def events_before_fence(system, command_id: str, fence: str) -> list:
    """Every published event of `command_id` up to the rejection of `fence`, a command sent
    after it on the same partition (so everything before the fence was handled)."""
    found = []
    async with EventFollower(system.bootstrap_servers, system.events_topic, True) as follower:
        async for envelope in follower.events():
            if envelope.correlationid == fence:
                return found
            if envelope.correlationid == command_id and envelope.type not in TELEMETRY_EVENTS:
                found.append(envelope)
    return found


async def test_a_command_id_reused_with_another_payload_is_refused_once_and_the_first_outcome_stands(system):
    first, second = unique("first"), unique("second")
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": first})
    await system.events_of(command_id, "ClusterUnlocked")
    for _ in range(2):  # the other payload twice: one answer
        await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": second},
                          command_id=command_id)
    await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": first},
                      command_id=command_id)  # the first payload again: a silent duplicate
    fence = await system.send("RestartClusterRequested", {"cluster_name": "dws-none"}, key="dws-e2e")
    events = await asyncio.wait_for(events_before_fence(system, command_id, fence), 60)
    assert [e.type for e in events] == SPEC_ORDER + ["CommandRejected"]
    assert events[-1].data["code"] == "command_id_reused" and events[-1].data["command_id"] == command_id
    system.wait_for_api(f"/snapshots/{first}", lambda r: r.status_code == 200 and r.json()["status"] == "Available")
    assert system.get(f"/snapshots/{second}").status_code == 404


async def test_a_driver_error_fails_the_snapshot_with_its_reason_and_unlocks(system):
    registration = await system.send("RegisterCluster", {
        "cluster_name": "dws-gone", "driver": "sqlite", "target": str(system.data_dir / "missing.sqlite")})
    await system.events_of(registration, "ClusterRegistered")
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-gone", "snapshot_name": "doomed-1"})
    events = await system.events_of(command_id, "ClusterUnlocked")
    assert [e.type for e in events] == ["ClusterLocked", "SnapshotStarted", "SnapshotFailed", "ClusterUnlocked"]
    assert "does not exist" in events[2].data["reason"]
    failed = system.wait_for_api("/snapshots/doomed-1", lambda r: r.status_code == 200 and r.json()["status"] == "Failed")
    assert "does not exist" in failed.json()["failure_reason"]
    cluster = system.wait_for_api("/clusters/dws-gone", lambda r: r.json()["task_status"] is None)
    assert cluster.json()["status"] == "Available"


async def test_undecodable_messages_go_to_the_dlq_with_the_error_and_the_worker_keeps_going(system):
    marker = unique("garbage").encode()
    await system.send_raw(b"{not json " + marker, key="dws-e2e")
    consumer = kafka.new_consumer(system.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(kafka.COMMANDS_DLQ, p)
                      for p in consumer.partitions_for_topic(kafka.COMMANDS_DLQ)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        record = None
        while record is None:
            batch = await consumer.getmany(timeout_ms=20000)
            assert batch, "nothing reached the DLQ"
            record = next((r for rs in batch.values() for r in rs if marker in r.value), None)
        assert dict(record.headers)[kafka.DLQ_ERROR_HEADER]
    finally:
        await consumer.stop()
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": unique("after")})
    assert (await system.events_of(command_id, "ClusterUnlocked"))[-1].type == "ClusterUnlocked"
