"""Which worker owns a cluster's workflows is observed, not assumed: the commands topic's
real partition count (not the setting) and the normalised key decide, so that a topic
auto-created with one partition, or a producer keying `DWS-Demo`, leaves no workflow that
no instance resumes. Real broker."""

import uuid

from events.kafka import ensure_topics, partition_count, partition_for_key, record_key
from services.snapshots.worker import Ownership

NAMES = [f"dws-{i:02d}" for i in range(20)]


async def test_a_one_partition_topic_makes_its_only_partition_own_every_cluster(broker):
    topic = f"own.commands.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap_servers, 1, [topic])
    ownership = Ownership()
    ownership.partitions, ownership.count = {0}, await partition_count(broker.bootstrap_servers, topic)
    assert ownership.count == 1
    assert {ownership.owner_of(name) for name in NAMES} == {0}
    assert any(partition_for_key(name, 3) != 0 for name in NAMES)  # what the setting would have said


async def test_every_spelling_of_a_cluster_name_has_one_owner(broker):
    topic = f"own.commands.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap_servers, 3, [topic])
    count = await partition_count(broker.bootstrap_servers, topic)
    owners = [Ownership() for _ in range(count)]
    for partition, ownership in enumerate(owners):
        ownership.partitions, ownership.count = {partition}, count
    for name in NAMES:
        spellings = {name, name.upper(), name.title()}
        assert len({record_key(spelling) for spelling in spellings}) == 1
        claimed = [o for o in owners for spelling in spellings if o.owner_of(spelling) is not None]
        assert len({id(o) for o in claimed}) == 1, name
