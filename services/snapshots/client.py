"""A Kafka client of the service, as any outside service would write one: publish a
command, follow the status events it causes. Used by `snapshotctl` and the tests. It
imports only the published language (`events`), nothing of the service's internals."""

import asyncio
from collections.abc import AsyncIterator

from aiokafka import TopicPartition

from events.codec import Undecodable, command_envelope, decode, encode
from events.commands import Command
from events.envelope import Envelope
from events.kafka import HEADERS, new_consumer, new_producer, record_key


async def publish_command(bootstrap_servers: str, topic: str, command: Command,
                          command_id: str | None = None) -> Envelope:
    fields = {"id": command_id} if command_id else {}
    envelope = command_envelope(command, **fields)
    producer = new_producer(bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode(envelope), key=record_key(command.cluster_name),
                                     headers=HEADERS)
    finally:
        await producer.stop()
    return envelope


class EventFollower:
    """Reads every partition of the events topic without a consumer group (no join
    delay), from the end as it was at `start()` or from the beginning."""

    def __init__(self, bootstrap_servers: str, topic: str, from_beginning: bool = False):
        self._consumer = new_consumer(bootstrap_servers, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest", fetch_max_wait_ms=50)
        self._topic = topic
        self._from_beginning = from_beginning

    async def start(self) -> "EventFollower":
        await self._consumer.start()
        partitions = await self._partitions()
        assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        if self._from_beginning:
            await self._consumer.seek_to_beginning(*assigned)
        else:
            await self._consumer.seek_to_end(*assigned)
        for partition in assigned:  # resolve the offsets now, before any command is sent
            await self._consumer.position(partition)
        return self

    async def _partitions(self, attempts: int = 20) -> set[int]:
        for _ in range(attempts):
            await self._consumer.topics()  # loads metadata for every topic
            if partitions := self._consumer.partitions_for_topic(self._topic):
                return partitions
            await asyncio.sleep(0.5)
        await self._consumer.stop()
        raise OSError(f"topic {self._topic} does not exist: is the service running?")

    async def stop(self) -> None:
        await self._consumer.stop()

    async def events(self) -> AsyncIterator[Envelope]:
        async for record in self._consumer:
            try:
                yield decode(record.value)
            except Undecodable:
                continue

    async def __aenter__(self) -> "EventFollower":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


#: The events that settle each command's outcome, besides CommandRejected. (A restore's
#: new cluster is registered on its own partition, so its ClusterRegistered may be read
#: before or after RestoreCompleted.)
FINAL_EVENTS = {
    "RegisterCluster": ("ClusterRegistered",),
    "ReportClusterStatus": ("ClusterStatusChanged",),
    "CreateSnapshotRequested": ("ClusterUnlocked",),
    "RestartClusterRequested": ("ClusterRestarted",),
    "DeleteSnapshotRequested": ("SnapshotDeleted",),
    "RestoreSnapshotRequested": ("RestoreCompleted", "RestoreFailed"),
    "SetSnapshotPolicy": ("SnapshotPolicySet",),
    "RemoveSnapshotPolicy": ("SnapshotPolicyRemoved",),
    "CopySnapshotRequested": ("SnapshotCopied", "SnapshotCopyFailed"),
    "CancelSnapshotRequested": ("SnapshotCancelled",),
}


#: The events that end a command unsuccessfully, and how `snapshotctl` says so.
FAILED_EVENTS = {"SnapshotFailed": "snapshot failed", "RestoreFailed": "restore failed",
                 "SnapshotCopyFailed": "copy failed"}


def failure_of(event_type: str, data: dict) -> str | None:
    """`<what> failed: <reason>` for a failure event, else None."""
    what = FAILED_EVENTS.get(event_type)
    return f"{what}: {data['reason']}" if what else None


#: An online snapshot's ClusterUnlocked carries `task_status` (the copy goes on): its
#: outcome, one of these, comes after it and settles the command.
ONLINE_OUTCOMES = ("SnapshotCompleted", "SnapshotFailed")


def settled(command_type: str, events: list[tuple[str, dict]]) -> bool:
    """Whether these events (type, data) of one command, in order, settle its outcome."""
    final, unlocked_online = ("CommandRejected", *FINAL_EVENTS.get(command_type, ())), False
    for event_type, data in events:
        if event_type == "ClusterUnlocked" and data.get("task_status"):
            unlocked_online = True
        elif event_type in final or (unlocked_online and event_type in ONLINE_OUTCOMES):
            return True
    return False


async def follow_command(follower: EventFollower, command_id: str,
                         command_type: str) -> AsyncIterator[Envelope]:
    """The events a command caused, until its outcome is settled."""
    seen = []
    async for envelope in follower.events():
        if envelope.correlationid != command_id:
            continue
        yield envelope
        seen.append((envelope.type, envelope.data))
        if settled(command_type, seen):
            return
