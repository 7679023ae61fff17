"""Creates the three topics with the configured partition count if they are missing."""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap_servers: str, partitions: int, names: list[str],
                        attempts: int = 30) -> None:
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


def partition_for_key(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a key: the partition
    whose owner handles that cluster's commands and workflows."""
    return (murmur2(key.lower().encode("utf-8")) & 0x7FFFFFFF) % partitions
