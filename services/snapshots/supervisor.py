"""`snapshotctl up`: everything on one machine, each part as its own process, supervised.

Starts the embedded broker when nothing answers at KAFKA_BOOTSTRAP_SERVERS, creates the
topics, registers the demo warehouse on an empty store, then runs `snapshotctl service`,
`projection` and `api` as children until Ctrl-C (or one of them stops)."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid

from events.commands import RegisterCluster
from events.kafka import first_broker
from services.snapshots import bootstrap
from services.snapshots.broker import EmbeddedBroker, is_listening
from services.snapshots.client import publish_command
from services.snapshots.demo import DEMO_CLUSTER, ensure_demo_warehouse
from services.snapshots.settings import Settings
from services.snapshots.worker import prepare_topics

log = logging.getLogger("snapshotctl")
PARTS = ("service", "projection", "api")
DEMO_REGISTRATION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:dws-snapshots:register:dws-demo"))


def up(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s snapshotctl: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = _start_broker_if_absent(settings)
    children: list[subprocess.Popen] = []
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        if settings.event_store == "postgres":
            bootstrap.ensure_postgres_database(settings)
        ensure_admin_token(settings)
        asyncio.run(prepare_topics(settings))
        asyncio.run(_register_demo_cluster_on_empty_store(settings))
        children = [_spawn(part) for part in PARTS]
        log.info("up: API on http://%s:%d, data in %s (Ctrl-C stops)",
                 settings.http_host, settings.http_port, settings.data_dir.resolve())
        while not stopping:
            if any(child.poll() is not None for child in children):
                log.error("a part stopped unexpectedly; stopping the rest")
                return 1
            time.sleep(0.3)
        return 0
    finally:
        _stop(children)
        if broker:
            broker.stop()
        log.info("stopped")


def ensure_admin_token(settings: Settings) -> None:
    """On first start, an `admin` token in `<data dir>/admin.token` (mode 0600), which
    `snapshotctl` uses when SNAPSHOT_API_TOKEN is not set."""
    path = settings.data_dir / "admin.token"
    if path.exists():
        return
    store = bootstrap.make_token_store(settings)
    store.revoke("admin")  # its file is gone, so nobody can use it any more
    token = store.create("admin", "admin")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    log.info("created an admin API token in %s (snapshotctl uses it)", path.resolve())


def _start_broker_if_absent(settings: Settings) -> EmbeddedBroker | None:
    if is_listening(settings.kafka_bootstrap_servers):
        log.info("using the Kafka broker at %s", settings.kafka_bootstrap_servers)
        return None
    host, port = first_broker(settings.kafka_bootstrap_servers)
    broker = EmbeddedBroker(host, port, settings.data_dir / "broker.log").start()
    log.info("started the embedded broker at %s", broker.bootstrap_servers)
    return broker


async def _register_demo_cluster_on_empty_store(settings: Settings) -> None:
    app = bootstrap.make_application(settings)
    try:
        if app.recorder.max_notification_id():
            return
    finally:
        app.close()
    path = ensure_demo_warehouse(settings.clusters_dir)
    command = RegisterCluster(cluster_name=DEMO_CLUSTER, driver="sqlite", target=str(path))
    await publish_command(settings.kafka_bootstrap_servers, settings.commands_topic, command,
                          DEMO_REGISTRATION_ID)
    log.info("registering the demo cluster %s (%s)", DEMO_CLUSTER, path)


def _spawn(part: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.snapshots", part],
                            start_new_session=True)


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
