"""`snapshotctl up`: everything on one machine, each part as its own process, supervised.

Claims the data directory (the pid file, `pidfile.py`), starts the embedded broker when
nothing answers at KAFKA_BOOTSTRAP_SERVERS and fills it with the store's history, creates
the topics, registers the demo warehouse on an empty store, then runs `snapshotctl
service`, `projection` and `api` as children until Ctrl-C or SIGTERM. A child that dies
on its own is restarted with backoff; every child dies with `up`, whatever kills it."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid

from events.commands import RegisterCluster
from events.kafka import PROTOCOL_VARIABLE, KafkaSettingsError, first_broker, security
from services.snapshots import bootstrap, logs, metrics, replay
from services.snapshots.broker import EmbeddedBroker, die_with_parent, is_listening
from services.snapshots.client import publish_command
from services.snapshots.demo import DEMO_CLUSTER, ensure_demo_warehouse
from services.snapshots.pidfile import PARTS, AlreadyRunning, PidFile, claim
from services.snapshots.settings import Settings
from services.snapshots.worker import prepare_topics

__all__ = ["AlreadyRunning", "up"]
log = logging.getLogger("snapshotctl")
DEMO_REGISTRATION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:dws-snapshots:register:dws-demo"))


def up(settings: Settings) -> int:
    """Run until Ctrl-C/SIGTERM/SIGHUP (0). Raises AlreadyRunning if another `up` has the
    data directory."""
    logs.configure(settings.log_format, "up")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    claim(settings.data_dir, settings.up_stop_grace_seconds)
    # Only once the data directory is ours: the parts inherit the directory, emptied of
    # what an earlier `up` counted.
    metrics.configure(settings.metrics_directory, "up", empty=True)
    stopping = _stop_on_signals()
    children = Children(settings)
    try:
        _start_broker_if_absent(settings, children)
        if settings.event_store == "postgres":
            bootstrap.ensure_postgres_database(settings)
        ensure_admin_token(settings)
        asyncio.run(prepare_topics(settings))
        if children.broker:
            _level_with_store(settings)
        asyncio.run(_register_demo_cluster_on_empty_store(settings))
        log.info("up: API on http://%s:%d, data in %s (Ctrl-C stops)",
                 settings.http_host, settings.http_port, settings.data_dir.resolve())
        children.supervise(stopping)
        return 0
    finally:
        children.stop()
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


def _stop_on_signals() -> list:
    """A flag the signals set: the loop notices it and stops every part cleanly."""
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.append(True))
    return stopping


def _start_broker_if_absent(settings: Settings, children: "Children") -> None:
    if is_listening(settings.kafka_bootstrap_servers):
        log.info("using the Kafka broker at %s", settings.kafka_bootstrap_servers)
        return
    protocol = security().protocol
    if protocol != "PLAINTEXT":
        # The embedded broker authenticates nobody: the parts would fail to log in to it,
        # and a user who asked for a secured bus must not silently get an open one.
        raise KafkaSettingsError(
            f"nothing answers at {settings.kafka_bootstrap_servers}, and the embedded broker "
            f"speaks only PLAINTEXT ({PROTOCOL_VARIABLE}={protocol}): start your Kafka first")
    host, port = first_broker(settings.kafka_bootstrap_servers)
    children.broker = EmbeddedBroker(host, port, settings.data_dir / "broker.log").start()
    children.record()
    log.info("started the embedded broker at %s", children.broker.bootstrap_servers)


def _level_with_store(settings: Settings) -> None:
    """A new embedded broker is empty (Tansu keeps nothing), while the relay's position may
    be past events that died with the old one: send it the store's whole history first.
    Same event ids, so consumers that deduplicate by id (the projection) are unaffected."""
    parts = bootstrap.build_replay(settings)
    try:
        sent = asyncio.run(replay.republish(parts, settings.kafka_bootstrap_servers,
                                            settings.events_topic, settings.service_id))
    finally:
        parts.app.close()
    log.info("re-published %d stored events to %s on the new broker", sent, settings.events_topic)


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


class Children:
    """The broker (if `up` started it) and the parts; the pid file names them all."""

    def __init__(self, settings: Settings):
        self.broker: EmbeddedBroker | None = None
        self.parts = [Part(name, settings) for name in PARTS]
        self._pid_file = PidFile(settings.data_dir)
        self._grace = settings.up_stop_grace_seconds

    def record(self) -> None:
        pids = {part.name: part.pid for part in self.parts if part.pid}
        if self.broker and self.broker.pid:
            pids["broker"] = self.broker.pid
        self._pid_file.write(pids)

    def supervise(self, stopping: list) -> None:
        """Start the parts, then restart any that dies, until a signal sets `stopping`."""
        while not stopping:
            # a list, not any(): every part is looked at in each round
            if [part for part in self.parts if part.watch(time.monotonic())]:
                self.record()
            time.sleep(0.2)

    def stop(self) -> None:
        """The clean stop: parts first (SIGTERM, SIGKILL after the grace), then the broker."""
        for part in self.parts:
            part.terminate()
        deadline = time.monotonic() + self._grace
        for part in self.parts:
            part.wait_or_kill(deadline)
        if self.broker:
            self.broker.stop()
        self._pid_file.remove()


class Backoff:
    """The wait before a restart: `first`, doubled after each death up to `cap`; a part that
    ran `reset_after` seconds before it died counts as healthy and waits `first` again."""

    def __init__(self, first: float, cap: float, reset_after: float):
        self.first, self.cap, self.reset_after = first, cap, reset_after
        self.deaths = 0  # in a row, without a healthy run between

    def after_death(self, ran_seconds: float) -> float:
        self.deaths = 1 if ran_seconds >= self.reset_after else self.deaths + 1
        return min(self.cap, self.first * 2 ** (self.deaths - 1))


class Part:
    """One part (`snapshotctl service` ...) as a child process, restarted with backoff."""

    def __init__(self, name: str, settings: Settings):
        self.name = name
        self._backoff = Backoff(settings.up_restart_backoff_seconds,
                                settings.up_restart_backoff_max_seconds,
                                settings.up_restart_reset_seconds)
        self._process: subprocess.Popen | None = None
        self._started = 0.0
        self._restart_at = 0.0  # now: the first start

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def watch(self, now: float) -> bool:
        """Start it when it is due, notice when it died; True when its pid changed."""
        if self._process is None:
            if now < self._restart_at:
                return False
            self._start(now)
            return True
        code = self._process.poll()
        if code is None:
            return False
        self._died(code, now)
        return True

    def _start(self, now: float) -> None:
        # Its own session: Ctrl-C in a terminal reaches `up` alone, which stops the parts in
        # order. PR_SET_PDEATHSIG: it dies with `up` even when `up` is SIGKILLed.
        self._process = subprocess.Popen([sys.executable, "-m", "services.snapshots", self.name],
                                         start_new_session=True, preexec_fn=die_with_parent())
        self._started = now
        if not self._backoff.deaths:
            log.info("started %s (pid %d)", self.name, self._process.pid)
        else:
            log.warning("restarted %s (pid %d), restart %d in a row", self.name, self._process.pid,
                        self._backoff.deaths)

    def _died(self, code: int, now: float) -> None:
        ran = now - self._started
        delay = self._backoff.after_death(ran)
        log.error("%s (pid %d) exited with %s after %.1f s; restarting it in %.0f s",
                  self.name, self._process.pid, _describe_exit(code), ran, delay)
        self._process, self._restart_at = None, now + delay

    def terminate(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self._process.pid)
            self._process.kill()
            self._process.wait()


def _describe_exit(code: int) -> str:
    """Popen's returncode in words: -9 is "signal SIGKILL (exit code -9)"."""
    if code < 0:
        return f"signal {signal.Signals(-code).name} (exit code {code})"
    return f"exit code {code}"
