"""The composition root: settings in, wired parts out. Every object of the service is
built and connected here, explicitly; the workers, the API, the supervisor and the replay
jobs only run what these functions return. Nothing connects at import time.

    build_service(settings)     -> ServiceParts   (`snapshotctl service`)
    build_projection(settings)  -> ProjectionParts (`snapshotctl projection`)
    build_api(settings)         -> FastAPI        (`snapshotctl api`)
    build_replay(settings)      -> ReplayParts    (`snapshotctl replay`)
    prepare_process(settings, part)                (logs and metrics of each part's process)
    service_worker / projection_worker(settings) -> the faust apps around those parts"""

import logging
import time
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from eventsourcing.persistence import PersistenceError
from sqlalchemy import URL, Engine

from services.snapshots import views
from services.snapshots.application import SnapshotsApplication
from services.snapshots.clock import Clock
from services.snapshots.drivers import ClusterDriver, SQLiteDriver
from services.snapshots.drivers.postgres import PostgresDriver
from services.snapshots.freezing import Freezer
from services.snapshots.intake import CommandIntake
from services.snapshots.jobs import Jobs
from services.snapshots.lease import FileLease, Lease, PostgresLease, SoleLease
from services.snapshots.progress import ProgressPublisher
from services.snapshots.projection import FollowStore, Projection
from services.snapshots.reconciler import Reconciler
from services.snapshots.relay import Relay, SharedProducer
from services.snapshots.scheduler import Scheduler
from services.snapshots.repository import Repositories
from services.snapshots.set_aside import SetAsideLog
from services.snapshots.settings import Settings
from services.snapshots.targets import AllowedTargets
from services.snapshots.tokens import TokenStore
from services.snapshots.threads import ThreadPool, Wakeup
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)


@dataclass
class ServiceParts:
    """The service worker: commands in, workflows, the relay out, background jobs."""

    app: SnapshotsApplication
    workflow: SnapshotWorkflow
    intake: CommandIntake
    relay: Relay
    producer: SharedProducer
    store: ThreadPool
    jobs: Jobs
    reconciler: Reconciler
    scheduler: Scheduler


@dataclass
class ProjectionParts:
    """The projection worker: follows the store, woken by the events topic."""

    follow: FollowStore
    views: ThreadPool
    set_aside: SetAsideLog


@dataclass
class ReplayParts:
    app: SnapshotsApplication
    engine: Engine
    set_aside: SetAsideLog


def build_service(settings: Settings) -> ServiceParts:
    store = ThreadPool(settings.store_threads, "store")
    relay_wakeup = Wakeup()
    app = make_application(settings, on_saved=relay_wakeup.set)
    workflow = make_workflow(app, make_drivers(settings), Repositories.from_settings(settings),
                             settings.snapshot_timeout_seconds, store, settings.copy_threads)
    freezer, jobs = workflow.freezer, workflow.freezer.jobs
    producer = SharedProducer(settings.kafka_bootstrap_servers)
    workflow.progress = ProgressPublisher(producer, settings.events_topic, settings.service_id,
                                          settings.progress_interval_seconds)
    intake = CommandIntake(app, workflow, partial(producer.send_and_wait, settings.dlq_topic), store)
    relay = Relay(app, producer, settings.events_topic, settings.service_id,
                  SetAsideLog(make_view_engine(settings)), store, relay_wakeup,
                  make_relay_lease(settings), settings.relay_batch_size)
    return ServiceParts(app, workflow, intake, relay, producer, store, jobs,
                        Reconciler(app, workflow, freezer, store), Scheduler(app, workflow, store))


def build_projection(settings: Settings) -> ProjectionParts:
    from services.snapshots.replay import store_reader

    engine, app = make_view_engine(settings), make_application(settings)
    set_aside = SetAsideLog(engine)
    follow = FollowStore(Projection(engine, set_aside=set_aside), store_reader(app, settings.service_id),
                         lambda: app.recorder.max_notification_id() or 0)
    return ProjectionParts(follow, ThreadPool(1, "views"), set_aside)


def build_api(settings: Settings):
    from events.codec import encode
    from events.kafka import HEADERS, record_key, security
    from services.snapshots.api import create_api

    security()  # a bad KAFKA_* variable stops the API at start, not at its first write
    engine, producer = make_view_engine(settings), SharedProducer(settings.kafka_bootstrap_servers)

    async def send(envelope) -> None:
        await producer.send_and_wait(settings.commands_topic, encode(envelope),
                                     record_key(envelope.subject), HEADERS)

    return create_api(engine, make_token_store(settings), send, allowed_targets(settings),
                      operations=operation_routes(settings, engine, SetAsideLog(engine)),
                      live_updates=make_live_updates(settings, engine))


def operation_routes(settings: Settings, engine: Engine, set_aside: SetAsideLog):
    """`/health` and `/metrics`: the store (opened on first use), the views, the broker."""
    from services.snapshots import health, metrics
    from services.snapshots.state import StateCollector, StorePositions

    store = StorePositions(partial(make_application, settings))
    check = health.HealthCheck(store, engine, set_aside, settings.kafka_bootstrap_servers,
                               health.Limits(settings.health_max_lag_events,
                                             settings.health_timeout_seconds))
    return health.operation_routes(check, metrics.scrape_registry(
        StateCollector(store, engine, settings.snapshot_timeout_seconds)))


def prepare_process(settings: Settings, part: str) -> None:
    """Logging and metrics of one part's process, before it builds anything: the log
    format, and counting into the metrics directory shared with the API."""
    from services.snapshots import logs, metrics

    logs.configure(settings.log_format, part)
    metrics.configure(settings.metrics_directory, part)


def make_live_updates(settings: Settings, engine: Engine):
    """The console's live updates: the API process follows the events topic itself."""
    from services.snapshots.client import EventFollower
    from services.snapshots.live import LiveUpdates

    return LiveUpdates(engine, lambda: EventFollower(settings.kafka_bootstrap_servers, settings.events_topic))


def make_token_store(settings: Settings) -> TokenStore:
    return TokenStore(make_view_engine(settings))


def build_replay(settings: Settings) -> ReplayParts:
    engine = make_view_engine(settings)
    return ReplayParts(make_application(settings), engine, SetAsideLog(engine))


def service_worker(settings: Settings):
    from services.snapshots.worker import create_service_worker

    return create_service_worker(settings, build_service(settings))


def projection_worker(settings: Settings):
    from services.snapshots.worker import create_projection_worker

    return create_projection_worker(settings, build_projection(settings))


def make_workflow(app: SnapshotsApplication, drivers: dict[str, ClusterDriver], repository,
                  timeout_seconds: float, store: ThreadPool | None = None,
                  copy_threads: int = 2) -> SnapshotWorkflow:
    """The workflow with its Freezer, thread pools and background jobs."""
    freezer = Freezer(drivers, ThreadPool(copy_threads, "copy"), ThreadPool(4, "control"), Jobs(),
                      timeout_seconds)
    return SnapshotWorkflow(app, freezer, repository, store or ThreadPool(2, "store"))


def make_application(settings: Settings, on_saved=None, attempts: int = 5) -> SnapshotsApplication:
    # The parts start together and each creates the store's tables if missing; PostgreSQL's
    # CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin ("duplicate key ...
    # pg_type"): whoever loses tries again and finds the tables.
    for attempt in range(attempts):
        try:
            return SnapshotsApplication(env=event_store_env(settings), on_saved=on_saved,
                                        allowed_targets=allowed_targets(settings),
                                        clock=Clock(settings.test_clock_file),
                                        copy_targets=Repositories.copy_targets_of(settings))
        except PersistenceError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def allowed_targets(settings: Settings) -> AllowedTargets:
    """SNAPSHOT_ALLOWED_TARGETS, read at start-up so that a bad entry stops the part at once."""
    return AllowedTargets.parse(settings.allowed_targets, settings.data_dir)


def make_drivers(settings: Settings) -> dict[str, ClusterDriver]:
    if settings.benchmark_driver:
        from services.snapshots.drivers.benchmark import BenchmarkDriver

        log.warning("BENCHMARK DRIVER: snapshots copy nothing")
        return {"sqlite": BenchmarkDriver(), "postgres": BenchmarkDriver()}
    passwords = {target: secret.get_secret_value() for target, secret in settings.cluster_passwords.items()}
    own_files = (settings.event_store_path, settings.view_path, settings.snapshot_repository,
                 settings.data_dir / "staging")
    return {"sqlite": SQLiteDriver(settings.clusters_dir, forbidden=own_files),
            "postgres": PostgresDriver(passwords, settings.freeze_lock_timeout_seconds,
                                       settings.snapshot_timeout_seconds,
                                       settings.release_lock_timeout_seconds, settings.pg_compression)}


def make_relay_lease(settings: Settings) -> Lease:
    """One relay publishes at a time among every instance on this event store."""
    name = f"{settings.service_id}:relay:{settings.events_topic}"
    if settings.event_store == "postgres":
        env = event_store_env(settings)
        return PostgresLease({"host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"],
                              "dbname": env["POSTGRES_DBNAME"], "user": env["POSTGRES_USER"],
                              "password": env["POSTGRES_PASSWORD"] or None}, name)
    if settings.event_store == "sqlite":
        return FileLease(settings.data_dir / "relay.lock")
    return SoleLease()


def make_view_engine(settings: Settings) -> Engine:
    return views.connect(view_url(settings))


def make_projection(settings: Settings) -> Projection:
    return Projection(make_view_engine(settings))


def event_store_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's persistence settings (PERSISTENCE_MODULE & co) for our settings."""
    if settings.event_store == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if settings.event_store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(settings.event_store_path),
                "SQLITE_LOCK_TIMEOUT": "10"}
    url = urlsplit(settings.postgres_dsn)
    return {"PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": _postgres_password(settings),
            # Store calls never queue for a connection (eventsourcing's default pool is 5 + 10).
            "POSTGRES_POOL_SIZE": str(max(5, settings.store_threads + 2))}


def view_url(settings: Settings) -> str | URL:
    if settings.event_store == "postgres":
        url = urlsplit(settings.postgres_dsn)
        return URL.create("postgresql+psycopg", username=url.username or "postgres",
                          password=_postgres_password(settings) or None, host=url.hostname,
                          port=url.port or 5432, database=url.path.lstrip("/"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.view_path}"


def ensure_postgres_database(settings: Settings) -> None:
    """Create the event store's PostgreSQL database if it does not exist yet (`up`)."""
    import psycopg

    url = urlsplit(settings.postgres_dsn)
    name = url.path.lstrip("/")
    with psycopg.connect(host=url.hostname, port=url.port or 5432, dbname="postgres",
                         user=url.username or "postgres",
                         password=_postgres_password(settings) or None,
                         autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                connection.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another part of the service created it at the same moment


def _postgres_password(settings: Settings) -> str:
    # Empty means: trust auth, or libpq's PGPASSFILE / ~/.pgpass.
    return settings.postgres_password.get_secret_value() if settings.postgres_password else ""
