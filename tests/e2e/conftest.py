"""One running system (service, projection, API processes) for the end-to-end tests."""

import pytest

from services.snapshots.demo import create_demo_warehouse
from events.kafka import ensure_topics
from tests.e2e.system import RunningSystem


@pytest.fixture(scope="session")
async def system(broker, tmp_path_factory):
    running = RunningSystem(broker.bootstrap_servers, tmp_path_factory.mktemp("system"))
    await ensure_topics(broker.bootstrap_servers, 3, [running.commands_topic, running.events_topic, "snapshot.commands.dlq"])
    running.start()
    try:
        warehouse = running.data_dir / "dws-e2e.sqlite"
        create_demo_warehouse(warehouse, 100, 1000)
        command_id = await running.send("RegisterCluster", {
            "cluster_name": "dws-e2e", "driver": "sqlite", "target": str(warehouse)})
        await running.events_of(command_id, "ClusterRegistered", timeout=60)
        running.wait_for_api("/clusters/dws-e2e", lambda r: r.status_code == 200, timeout=60)
        running.warehouse = warehouse
        yield running
    finally:
        running.stop()

