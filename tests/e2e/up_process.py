"""`snapshotctl up` as a real process on ports and a data directory of its own, and the
ways a user or the machine treats it: Ctrl-C, SIGKILL, a look at its pid file and log."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from services.snapshots.broker import free_port
from tests.e2e.system import ROOT

PARTS = ("service", "projection", "api")


def wait_for(check, timeout: float, what: str):
    """The first truthy answer of `check`; HTTP errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Up:
    def __init__(self, data_dir: Path, kafka: str | None = None, http_port: int | None = None,
                 **settings: str):
        self.data_dir = data_dir
        self.kafka = kafka or f"127.0.0.1:{free_port()}"
        self.http_port = http_port or free_port()
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
                    "SNAPSHOT_HTTP_PORT": str(self.http_port), "SNAPSHOT_DATA_DIR": str(data_dir),
                    **{f"SNAPSHOT_{k.upper()}": v for k, v in settings.items()}}
        self.log_path = data_dir.parent / f"{data_dir.name}-up.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Up":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "services.snapshots", "up"],
                                            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    def run_another(self) -> subprocess.CompletedProcess:
        """A second `snapshotctl up` with the same settings, to completion."""
        return subprocess.run([sys.executable, "-m", "services.snapshots", "up"], env=self.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    def get(self, path: str) -> httpx.Response:
        """GET with the admin token that `up` wrote on first start."""
        token_file = self.data_dir / "admin.token"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.is_file() else {}
        return httpx.get(f"http://127.0.0.1:{self.http_port}{path}", headers=headers, timeout=10)

    def serves_the_demo_cluster(self) -> bool:
        answer = self.get("/clusters")  # 401 until `up` has written its admin token
        return answer.status_code == 200 and any(c["name"] == "dws-demo" for c in answer.json()["clusters"])

    def wait_until_serving(self, timeout: float = 90) -> "Up":
        wait_for(self.serves_the_demo_cluster, timeout, f"dws-demo in /clusters\n{self.log()[-3000:]}")
        return self

    def pid_file(self) -> dict:
        return json.loads((self.data_dir / "up.pid").read_text())

    def child_pid(self, name: str) -> int | None:
        """The child's pid as the pid file names it; None while it waits to be restarted."""
        return self.pid_file()["children"].get(name, {}).get("pid")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL `up` alone: the OOM killer, `kill -9`."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 40) -> int:
        """Ctrl-C, as a user in the terminal; returns the exit code (None: never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.process.pid)
            raise


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it at once: a power cut, a container kill."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        process.kill()
    psutil.wait_procs(tree, timeout=30)


def parts_of(data_dir: Path) -> list[psutil.Process]:
    """Every running service/projection/api process started for this data directory."""
    found = []
    for process in psutil.process_iter():
        try:
            command = process.cmdline()
            if (command[-1:] and command[-1] in PARTS and "services.snapshots" in command
                    and process.environ().get("SNAPSHOT_DATA_DIR") == str(data_dir)):
                found.append(process)
        except psutil.Error:
            continue  # ended while we looked
    return found
