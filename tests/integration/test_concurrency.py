"""Concurrent writers on one event store (two service instances, many threads): a
cluster still takes exactly one snapshot at a time."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots import bootstrap
from services.snapshots.settings import Settings
from tests.conftest import postgres_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path):
    if request.param == "postgres":
        dsn = postgres_dsn(request.getfixturevalue("postgres_database"))
        return Settings(event_store="postgres", postgres_dsn=dsn, data_dir=tmp_path, allowed_targets="*")
    return Settings(event_store="sqlite", data_dir=tmp_path, allowed_targets="*")


def test_of_many_simultaneous_snapshot_requests_for_one_cluster_exactly_one_proceeds(settings):
    instances = [bootstrap.make_application(settings) for _ in range(2)]
    instances[0].handle("reg", RegisterCluster(cluster_name="dws-busy", driver="sqlite", target="/x"))
    requests = [(f"cmd-{i}", CreateSnapshotRequested(cluster_name="dws-busy", snapshot_name=f"snap-{i:02d}"))
                for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda job: instances[job[0] % 2].handle(*job[1]), enumerate(requests)))
    assert sorted(outcomes) == ["accepted"] + ["rejected"] * 11
    store = instances[0]
    codes = [store.mapper.to_domain_event(n).code for n in store.recorder.select_notifications(1, 1000)
             if n.topic.endswith("CommandRejected")]
    assert codes == ["snapshot_in_progress"] * 11


def test_a_command_id_delivered_to_two_instances_at_once_has_one_effect(settings):
    instances = [bootstrap.make_application(settings) for _ in range(2)]
    instances[0].handle("reg", RegisterCluster(cluster_name="dws-twice", driver="sqlite", target="/x"))
    command = CreateSnapshotRequested(cluster_name="dws-twice", snapshot_name="once-only")
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda i: instances[i % 2].handle("same-id", command), range(8)))
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 7
