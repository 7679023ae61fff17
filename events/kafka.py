"""The Kafka conventions of dws-snapshots, in one place: topic names, record keys and
headers, the broker address, producer construction, topic creation, and which partition a
cluster's records land on. Every producer and consumer (the service, the projection, the
CLI, an outside client) uses these, so they cannot drift apart."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from events.vocabulary import name_key

log = logging.getLogger(__name__)

#: Default topic names (SPEC.md, "Topics"); each can be overridden by a setting.
COMMANDS = "snapshot.commands"
EVENTS = "snapshot.events"
COMMANDS_DLQ = "snapshot.commands.dlq"

#: Header on a DLQ record that carries the error.
DLQ_ERROR_HEADER = "x-snapshot-error"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS = [("content-type", CONTENT_TYPE.encode())]


def record_key(cluster_name: str) -> bytes:
    """The Kafka key of every command and event about a cluster: its name, lower-cased,
    so that every spelling of one cluster lands on one partition, in order."""
    return name_key(cluster_name).encode("utf-8")


def partition_for_key(cluster_name: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a cluster's key."""
    return (murmur2(record_key(cluster_name)) & 0x7FFFFFFF) % partitions


def first_broker(bootstrap_servers: str) -> tuple[str, int]:
    """(host, port) of the first address in a bootstrap list such as `h1:9092,h2:9092`."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def new_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Tansu has no idempotent producer: acks=all without idempotence (SPEC.md).
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                            enable_idempotence=False, linger_ms=5,
                            request_timeout_ms=15000, retry_backoff_ms=200)


async def ensure_topics(bootstrap_servers: str, partitions: int, names: list[str],
                        attempts: int = 30) -> None:
    """Create the topics that are missing, with `partitions` partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def partition_count(bootstrap_servers: str, topic: str) -> int:
    """How many partitions the topic really has (from the broker's metadata)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} has no partitions (does it exist?)")
        return len(partitions)
    finally:
        await consumer.stop()
