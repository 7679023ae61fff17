"""The outbox relay: the event store's notification log → `snapshot.events`.

Events reach Kafka only from here, in notification order, keyed by cluster name. The
relay records the last published notification id in the event store's own tracking
table after Kafka has acknowledged the batch (acks=all), so after a crash it re-sends at
most one batch (consumers deduplicate by event id) and never skips one. However many
service instances run, only the holder of the relay lease (`lease.py`) publishes. A stored
event it cannot translate is set aside (logged, recorded in the set-aside log, shown on `/health`)
and stepped over: one bad event never stops the rest from being published."""

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Notification, Tracking

from events.codec import encode
from events.envelope import Envelope
from events.kafka import HEADERS, new_producer, record_key
from services.snapshots import logs
from services.snapshots.application import SnapshotsApplication
from services.snapshots.lease import Lease, SoleLease
from services.snapshots.domain import command_record_id
from services.snapshots.published import CommandContexts, Untranslatable, context_of, to_envelope
from services.snapshots.set_aside import SetAsideLog
from services.snapshots.threads import ThreadPool, Wakeup

log = logging.getLogger(__name__)


class Relay:
    tracking_name = "relay"

    def __init__(self, app: SnapshotsApplication, producer: "SharedProducer", topic: str,
                 source: str, set_aside: SetAsideLog | None = None, store: ThreadPool | None = None,
                 wakeup: Wakeup | None = None, lease: Lease | None = None, batch_size: int = 500):
        self._app = app
        self._producer = producer
        self._topic = topic
        self._source = source
        self._set_aside = set_aside
        self._store = store or ThreadPool(1, "relay")
        self._wakeup = wakeup or Wakeup()
        self._lease = lease or SoleLease()
        self._leading = False
        self._batch_size = batch_size
        self._tracking = app.factory.tracking_recorder()
        self._contexts = contexts_for(app)

    def position(self) -> int:
        return self._tracking.max_tracking_id(self.tracking_name) or 0

    async def publish_pending(self) -> int:
        """Publish one batch after the tracked position; returns how many were stored."""
        position = await self._store.run(self.position)
        batch = await self._store.run(self._app.recorder.select_notifications,
                                      position + 1, self._batch_size)
        if not batch:
            return 0
        envelopes = await self._store.run(self.translate, batch)
        await publish(await self._producer.get(), self._topic, envelopes)
        await self._store.run(self._tracking.insert_tracking, Tracking(self.tracking_name, batch[-1].id))
        # One line a batch, naming its commands: a grep of a command id finds it.
        log.info("relayed %d events (positions %d-%d) to %s", len(envelopes), batch[0].id,
                 batch[-1].id, self._topic, extra=logs.batch_fields(envelopes))
        return len(batch)

    def translate(self, batch: Iterable[Notification]) -> list[Envelope]:
        return list(translate(self._app, batch, self._source, self._set_aside, self._contexts))

    async def run(self, idle_seconds: float, lease_retry_seconds: float = 2.0) -> None:
        try:
            while True:
                try:
                    if not await self._store.run(self._holds_lease):
                        await asyncio.sleep(lease_retry_seconds)  # another instance relays
                    elif not await self.publish_pending():
                        await self._wakeup.wait(idle_seconds)  # a save wakes it; the timeout is a backstop
                except asyncio.CancelledError:
                    raise
                except Exception:  # broker away: keep the position, try again shortly
                    log.exception("relay could not publish; retrying")
                    await asyncio.sleep(1.0)
        finally:
            self._lease.release()

    def _holds_lease(self) -> bool:
        leading = self._lease.held() or self._lease.acquire()
        if leading != self._leading:
            log.info("relay lease %s", "acquired: this instance publishes" if leading
                     else "not held: another instance publishes")
            self._leading = leading
        return leading


def contexts_for(app: SnapshotsApplication) -> CommandContexts:
    """Command contexts (actor, trace) for a reader of this application's log."""
    def lookup(command_id: str) -> dict | None:
        record = app.find(command_record_id(command_id))
        return context_of(record) if record is not None else None
    return CommandContexts(lookup)


def translate(app: SnapshotsApplication, batch: Iterable[Notification], source: str,
              set_aside: SetAsideLog | None = None, contexts: CommandContexts | None = None):
    """The published envelopes of a batch of stored events, each with its command's
    context; an untranslatable one is set aside (recorded, when a log is given) and skipped."""
    contexts = contexts if contexts is not None else contexts_for(app)
    for notification in batch:
        try:
            envelope = to_envelope(app.mapper, notification, source, contexts)
        except Untranslatable as error:
            log.error("relay set aside %s", error)
            if set_aside is not None:
                set_aside.record("relay", error.position, error.topic, error.reason)
            continue
        if envelope is not None:
            yield envelope


async def publish(producer: AIOKafkaProducer, topic: str, envelopes: Iterable[Envelope]) -> int:
    """Send envelopes keyed by cluster name and wait until the broker has them all."""
    futures = [await producer.send(topic, encode(envelope), key=record_key(envelope.subject),
                                   headers=HEADERS)
               for envelope in envelopes]
    await asyncio.gather(*futures)
    return len(futures)


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

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None, headers: list) -> None:
        await (await self.get()).send_and_wait(topic, value, key=key, headers=headers)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
