"""The composition root: settings in, wired objects out. Nothing connects at import time."""

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import URL, Engine

from services.snapshots import views
from services.snapshots.application import SnapshotsApplication
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.drivers import ClusterDriver, SQLiteDriver
from services.snapshots.drivers.postgres import PostgresDriver
from services.snapshots.projection import Projection
from services.snapshots.settings import Settings


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
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres",
           "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
           "POSTGRES_HOST": url.hostname or "127.0.0.1",
           "POSTGRES_PORT": str(url.port or 5432),
           "POSTGRES_USER": url.username or "postgres",
           "POSTGRES_PASSWORD": _postgres_password(settings)}
    return env


def view_url(settings: Settings) -> str | URL:
    if settings.event_store == "postgres":
        url = urlsplit(settings.postgres_dsn)
        return URL.create("postgresql+psycopg", username=url.username or "postgres",
                          password=_postgres_password(settings) or None, host=url.hostname,
                          port=url.port or 5432, database=url.path.lstrip("/"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.view_path}"


def _postgres_password(settings: Settings) -> str:
    # Empty means: trust auth, or libpq's PGPASSFILE / ~/.pgpass.
    return settings.postgres_password.get_secret_value() if settings.postgres_password else ""


def make_application(settings: Settings) -> SnapshotsApplication:
    return SnapshotsApplication(env=event_store_env(settings))


def make_drivers(settings: Settings) -> dict[str, ClusterDriver]:
    if settings.benchmark_driver:
        from services.snapshots.drivers.benchmark import BenchmarkDriver

        logging.getLogger(__name__).warning("BENCHMARK DRIVER: snapshots copy nothing")
        return {"sqlite": BenchmarkDriver(), "postgres": BenchmarkDriver()}
    passwords = {target: secret.get_secret_value() for target, secret in settings.cluster_passwords.items()}
    own_files = (settings.event_store_path, settings.view_path, settings.snapshot_repository)
    return {"sqlite": SQLiteDriver(settings.clusters_dir, forbidden=own_files),
            "postgres": PostgresDriver(passwords, settings.freeze_lock_timeout_seconds,
                                       settings.snapshot_timeout_seconds)}


def make_view_engine(settings: Settings) -> Engine:
    return views.connect(view_url(settings))


def make_projection(settings: Settings) -> Projection:
    return Projection(make_view_engine(settings))


@dataclass
class DemoCluster:
    name: str
    path: Path


def ensure_demo_cluster(settings: Settings) -> DemoCluster:
    """The demo warehouse `dws-demo`: a SQLite file with sample data, made once."""
    path = settings.demo_cluster_path
    if not path.exists():
        create_demo_warehouse(path)
    return DemoCluster("dws-demo", path.resolve())


def ensure_postgres_database(settings: Settings) -> None:
    """Create the event store's PostgreSQL database if it does not exist yet."""
    import psycopg

    url = urlsplit(settings.postgres_dsn)
    name = url.path.lstrip("/")
    with psycopg.connect(host=url.hostname, port=url.port or 5432, dbname="postgres",
                         user=url.username or "postgres",
                         password=_postgres_password(settings) or None,
                         autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')

