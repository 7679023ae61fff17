"""Settings, read once from the environment (prefix SNAPSHOT_) by the composition root."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from events import kafka


class Settings(BaseSettings):
    """Every knob of the service. Secrets are SecretStr and never logged or published."""

    model_config = SettingsConfigDict(env_prefix="SNAPSHOT_", extra="ignore")

    data_dir: Path = Path(".snapshot-data")
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    commands_topic: str = kafka.COMMANDS
    events_topic: str = kafka.EVENTS
    dlq_topic: str = kafka.COMMANDS_DLQ
    topic_partitions: int = 3
    broker_session_timeout_seconds: float = 10.0
    broker_rebalance_timeout_seconds: float = 6.0
    #: How long a consumer's fetch may wait for data (faust's own default is 1500 ms).
    consumer_fetch_max_wait_ms: int = 50
    #: `sqlite` (a file under data_dir), `postgres` (event_store_dsn) or `popo` (memory).
    event_store: str = Field("sqlite", pattern="^(sqlite|postgres|popo)$")
    #: A PostgreSQL URL without the password, e.g. postgresql://postgres@127.0.0.1:5432/snapshots
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/snapshots"
    postgres_password: SecretStr | None = None
    #: The CLI's API token (else `<data dir>/admin.token`).
    api_token: SecretStr | None = None
    #: Threads for blocking event-store calls, apart from the copies' pool (see threads.py).
    #: Several at once let saves share a transaction (group_commit.py); a PostgreSQL store
    #: gets a connection pool of this size plus two. Keep it under 15 on SQLite:
    #: eventsourcing's SQLite pool holds 15 connections and a call beyond waits for one.
    store_threads: int = Field(8, ge=1, le=64)
    #: The intake takes the commands that arrived together, up to this many, waiting at
    #: most `command_batch_seconds` for more (different clusters' commands run at once).
    command_batch_size: int = Field(200, ge=1, le=10_000)
    command_batch_seconds: float = Field(0.005, gt=0)
    relay_batch_size: int = 500
    #: How often the projection catches up with the store when the topic is quiet.
    projection_poll_seconds: float = Field(2.0, gt=0)
    relay_idle_seconds: float = 0.2  # a backstop: local saves wake the relay at once
    snapshot_timeout_seconds: float = 3600.0
    #: Threads for copies (pg_dump, SQLite backups): how many snapshots copy at once.
    copy_threads: int = Field(4, ge=1, le=256)
    #: How often the reconciler looks for locked or frozen clusters with nothing running.
    reconcile_interval_seconds: float = Field(60.0, gt=0)
    #: How often the scheduler fires policies' slots and expires snapshots (scheduler.py).
    scheduler_interval_seconds: float = Field(30.0, gt=0)
    #: Tests only: a file holding the time the service reads as now (clock.py). Unset: UTC.
    test_clock_file: Path | None = None
    #: At most one `SnapshotProgress` event per copy this often (the final 100 % one always).
    progress_interval_seconds: float = Field(1.0, gt=0)
    #: Passwords of `postgres` clusters, by registered target URL (JSON in the environment:
    #: SNAPSHOT_CLUSTER_PASSWORDS='{"postgresql://dws@db:5432/wh": "..."}'); or use PGPASSFILE.
    cluster_passwords: dict[str, SecretStr] = {}
    freeze_lock_timeout_seconds: float = 10.0
    #: How long removing a PostgreSQL freeze's triggers waits for running queries before it
    #: is retried later (the cluster is writable before this: release needs no table lock).
    release_lock_timeout_seconds: float = Field(2.0, gt=0)
    #: pg_dump's compression level (`--compress`, 0-9) for `postgres` snapshots (pg_dump's
    #: own default is 6). 1 is 2-3 times as fast as 6 for a dump 4 % larger (README, "Benchmarks").
    pg_compression: int = Field(1, ge=0, le=9)
    #: Where clusters may live: `/dir` (sqlite files under it), `host` or `host:port`
    #: (PostgreSQL servers), `*` (anything); comma-separated. Unset: the data directory and
    #: PostgreSQL on this machine. A plain string, so that it is not read as JSON.
    allowed_targets: str | None = None
    service_id: str = "dws-snapshots"
    #: `snapshotctl up`: a part that dies is restarted after this delay, doubled after each
    #: death up to the cap; a part that ran `up_restart_reset_seconds` starts again from it.
    up_restart_backoff_seconds: float = Field(1.0, gt=0)
    up_restart_backoff_max_seconds: float = Field(30.0, gt=0)
    up_restart_reset_seconds: float = Field(60.0, ge=0)
    #: How long `up` waits after SIGTERM (its parts on a clean stop, or what a crashed `up`
    #: left running) before SIGKILL.
    up_stop_grace_seconds: float = Field(15.0, ge=0)
    #: bench/ only: every driver is replaced by one that copies nothing (see drivers/benchmark.py).
    benchmark_driver: bool = False
    #: Log lines: `json` (one object a line), `text`, or `auto` (JSON unless on a terminal).
    log_format: str = Field("auto", pattern="^(auto|json|text)$")
    #: Where every part writes its metrics for the API's /metrics (shared by all parts);
    #: unset: `<data dir>/metrics`.
    metrics_dir: Path | None = Field(None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    #: /health fails when the relay or the projection is more events than this behind the store.
    health_max_lag_events: int = Field(1000, ge=0)
    #: How long /health waits for the store, the views and the broker, each.
    health_timeout_seconds: float = Field(2.0, gt=0)

    #: Where snapshots are written: `local` (`<data dir>/snapshots`) or `s3://bucket/prefix`
    #: (endpoint, region and credentials from the AWS SDK's own variables, never here).
    repository: str = "local"
    #: Repository URLs a `CopySnapshotRequested` may name (comma-separated).
    copy_targets: str | None = None
    #: `auto`, `path` (MinIO or another endpoint without bucket subdomains) or `virtual`.
    s3_addressing_style: str = Field("auto", pattern="^(auto|path|virtual)$")
    #: Bytes of each part of an S3 upload, held in memory while a part fills (S3: 5 MiB at least).
    s3_part_size_bytes: int = Field(8 << 20, ge=5 << 20, le=5 << 30)

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def view_path(self) -> Path:
        return self.data_dir / "views.sqlite"

    @property
    def snapshot_repository(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def metrics_directory(self) -> Path:
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def clusters_dir(self) -> Path:
        """Where the sqlite driver keeps clusters it creates (the demo, restores)."""
        return self.data_dir / "clusters"
