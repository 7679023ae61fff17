"""The outbox relay: the event store's notification log → `snapshot.events`.

Events reach Kafka only from here, in notification order, keyed by cluster name. The
relay records the last published notification id in the event store's own tracking
table after Kafka has acknowledged the batch (acks=all), so after a crash it re-sends at
most one batch (consumers deduplicate by event id) and never skips one."""

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Tracking

from events import topics
from events.codec import encode
from services.snapshots.application import SnapshotsApplication
from services.snapshots.published import to_envelopes

log = logging.getLogger(__name__)
HEADERS = [("content-type", topics.CONTENT_TYPE.encode())]


class Relay:
    tracking_name = "relay"

    def __init__(self, app: SnapshotsApplication, producer: "SharedProducer", topic: str,
                 source: str, batch_size: int = 500):
        self._app = app
        self._producer = producer
        self._topic = topic
        self._source = source
        self._batch_size = batch_size
        self._tracking = app.factory.tracking_recorder()
        self._wake = asyncio.Event()

    def position(self) -> int:
        return self._tracking.max_tracking_id(self.tracking_name) or 0

    async def publish_pending(self) -> int:
        """Publish one batch after the tracked position; returns how many were stored."""
        position = self.position()
        batch = self._app.recorder.select_notifications(position + 1, self._batch_size)
        if not batch:
            return 0
        await publish(await self._producer.get(), self._topic, to_envelopes(self._app, batch, self._source))
        self._tracking.insert_tracking(Tracking(self.tracking_name, batch[-1].id))
        return len(batch)

    def wake(self) -> None:
        """Something was stored: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self, idle_seconds: float) -> None:
        self._app.on_saved = self.wake
        while True:
            try:
                if not await self.publish_pending():
                    try:
                        await asyncio.wait_for(self._wake.wait(), idle_seconds)
                    except TimeoutError:
                        pass
                    self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker away: keep the position, try again shortly
                log.exception("relay could not publish; retrying")
                await asyncio.sleep(1.0)


async def publish(producer: AIOKafkaProducer, topic: str, envelopes) -> int:
    """Send envelopes keyed by cluster name and wait until the broker has them all."""
    futures = [
        # Lower-cased: names are case-insensitive, and every event of one cluster must
        # land on one partition whatever spelling a command used.
        await producer.send(topic, encode(envelope), key=envelope.subject.lower().encode("utf-8"),
                            headers=HEADERS)
        for envelope in envelopes
    ]
    await asyncio.gather(*futures)
    return len(futures)


def new_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Tansu has no idempotent producer; acks=all without idempotence (SPEC.md).
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                            enable_idempotence=False, linger_ms=5,
                            request_timeout_ms=15000, retry_backoff_ms=200)


class SharedProducer:
    """One producer per process, created on first use inside the running event loop."""

    def __init__(self, bootstrap_servers: str):
        self._bootstrap_servers = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None

    async def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = new_producer(self._bootstrap_servers)
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
