"""The faust workers. Run with `snapshotctl service` and `snapshotctl projection`
(or everything at once with `snapshotctl up`). The agents only hand records to the parts
that `bootstrap` built.

The service worker consumes `snapshot.commands` (agent `handle_snapshot_commands`),
runs snapshot workflows, and relays the event store to `snapshot.events`. The
projection worker consumes `snapshot.events` into the views (agent
`project_status_events`). Each is its own consumer group, so each scales on its own."""

import asyncio
import logging

import aiokafka
import faust
import faust.transport.drivers.aiokafka as faust_aiokafka

from events.codec import Undecodable, decode
from events.kafka import ensure_topics, faust_credentials, partition_count, partition_for_key
from services.snapshots import logs
from services.snapshots.bootstrap import ProjectionParts, ServiceParts
from services.snapshots.settings import Settings

log = logging.getLogger(__name__)


class _PromptConsumer(aiokafka.AIOKafkaConsumer):
    """faust hard-codes fetch_max_wait_ms=1500 for its consumer; a fetch that is waiting
    when a command arrives then delays it by up to that long on a broker that does not
    answer early (measured on Tansu: p50 ~0.5-1 s at 10 commands/s). Cap it."""

    fetch_max_wait_ms = 1500

    def __init__(self, *args, **kwargs):
        kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), self.fetch_max_wait_ms)
        super().__init__(*args, **kwargs)


def _use_prompt_consumer(settings: Settings) -> None:
    _PromptConsumer.fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms
    faust_aiokafka.aiokafka.AIOKafkaConsumer = _PromptConsumer


class Ownership:
    """Which clusters this worker runs workflows for: those whose key falls, by the
    default partitioner and the commands topic's real partition count, in a partition
    assigned to it. Commands arrive there whatever spelling their producer keyed them by
    (`events.kafka.record_key` lower-cases); a workflow started from a command on another
    partition belongs to that partition until the next rebalance cancels it, and the
    owner computed here resumes it."""

    def __init__(self):
        self.partitions: set[int] = set()
        self.count: int | None = None

    def owner_of(self, cluster_name: str) -> int | None:
        """The assigned partition that owns the cluster, or None when another worker does."""
        if self.count is None:
            return None
        partition = partition_for_key(cluster_name, self.count)
        return partition if partition in self.partitions else None


def _faust_app(settings: Settings, app_id: str) -> faust.App:
    _use_prompt_consumer(settings)
    datadir = settings.data_dir / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id, broker=f"kafka://{settings.kafka_bootstrap_servers}", store="memory://",
        # KAFKA_SECURITY_PROTOCOL & co, as for every other client (events.kafka)
        broker_credentials=faust_credentials(),
        datadir=str(datadir), web_enabled=False,
        topic_partitions=settings.topic_partitions, topic_replication_factor=1,
        producer_acks=-1, producer_enable_idempotence=False,
        consumer_auto_offset_reset="earliest", broker_commit_interval=0.5,
        # A consumer joins a group in about half the rebalance timeout on Tansu; the
        # workflow's blocking I/O runs in threads, so short timeouts are safe.
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_seconds,
        broker_heartbeat_interval=1.0)


def _raw_topic(app: faust.App, name: str, partitions: int):
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


def create_service_worker(settings: Settings, parts: ServiceParts) -> faust.App:
    app = _faust_app(settings, settings.service_id)
    commands = _raw_topic(app, settings.commands_topic, settings.topic_partitions)

    ownership = Ownership()

    @app.agent(commands)
    async def handle_snapshot_commands(stream):
        # The records that arrived together (up to `command_batch_size`, waiting at most
        # `command_batch_seconds` for more): each key's in order, different keys at once,
        # so that their saves share a transaction. `receive_many` returns only when every
        # record has its outcome or is in the DLQ, pausing while the event store is away.
        # take_events acks the records only after this body is done with the batch, and
        # faust commits only acked offsets, so a paused command is neither skipped nor
        # committed: a SIGKILL re-delivers it, and a SIGTERM waits for it (faust's
        # stream_wait_empty) until the store is back or the process is killed.
        async for batch in stream.take_events(settings.command_batch_size, within=settings.command_batch_seconds):
            try:
                await parts.intake.receive_many([(record.value, record.key, record.message.partition)
                                                 for record in batch])
            except Exception:  # the intake never raises; a last guard all the same
                log.exception("commands at %s could not be handled",
                              [(record.message.partition, record.message.offset) for record in batch])

    @app.on_partitions_revoked.connect
    async def cancel_workflows_of_revoked_partitions(sender, revoked, **kwargs):
        # Their new owner resumes them; two instances must never run one workflow.
        lost = {tp.partition for tp in revoked if tp.topic == settings.commands_topic}
        ownership.partitions -= lost
        if cancelled := parts.workflow.cancel_partitions(lost):
            log.info("cancelled %d workflows of revoked partitions %s", cancelled, sorted(lost))

    @app.on_partitions_assigned.connect
    async def resume_workflows_of_assigned_clusters(sender, assigned, **kwargs):
        ownership.partitions = {tp.partition for tp in assigned if tp.topic == settings.commands_topic}
        ownership.count = await partition_count(settings.kafka_bootstrap_servers, settings.commands_topic)
        if resumed := await parts.workflow.resume_interrupted(ownership.owner_of):
            log.info("resumed %d interrupted workflows", resumed)
        # At once, not at the first interval: lift freezes and remove traces a crash left.
        parts.jobs.retry_until_done("reconcile-at-assignment",
                                    lambda: parts.reconciler.reconcile(ownership.owner_of))

    @app.task
    async def relay_stored_events():
        try:
            await parts.relay.run(settings.relay_idle_seconds)
        finally:
            await parts.producer.stop()

    @app.task
    async def run_background_jobs():
        parts.jobs.every("reconcile", settings.reconcile_interval_seconds,
                         lambda: parts.reconciler.reconcile(ownership.owner_of))
        parts.jobs.every("schedule", settings.scheduler_interval_seconds,
                         lambda: parts.scheduler.tick(ownership.owner_of))

    @app.on_before_shutdown.connect
    async def stop_background_jobs(sender, **kwargs):
        await parts.jobs.stop()

    return app


def create_projection_worker(settings: Settings, parts: ProjectionParts) -> faust.App:
    app = _faust_app(settings, settings.service_id + "-projection")
    events = _raw_topic(app, settings.events_topic, settings.topic_partitions)

    @app.agent(events)
    async def project_status_events(stream):
        # The events only wake the projection; it applies what the store holds (the
        # truth), in batches, and sets aside anything on the topic the store lacks.
        async for records in stream.take(500, within=0.02):
            envelopes = []
            for raw in records:
                try:
                    envelopes.append(decode(raw))
                except Undecodable as error:
                    log.warning("skipping an undecodable status event: %s", error)
                    parts.set_aside.record("projection", 0, "undecodable", str(error))
            await parts.views.run(parts.follow, envelopes)

    @app.timer(interval=settings.projection_poll_seconds)
    async def catch_up_with_the_store():
        # A view behind the store with nothing new on the topic (a broker that lost
        # events, say) still converges.
        await parts.views.run(parts.follow)

    return app


async def prepare_topics(settings: Settings) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions,
                        [settings.commands_topic, settings.events_topic, settings.dlq_topic])


def run(app: faust.App, settings: Settings, loglevel: str = "info") -> None:
    """Run a worker until SIGINT/SIGTERM; faust's Worker stops it cleanly."""
    asyncio.run(prepare_topics(settings))
    # faust replaces the logging configuration when it starts: hand it ours (logs.py).
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logs.active_config())
    worker.execute_from_commandline()
