"""`snapshotctl up` on an empty data directory: everything on one machine."""

import os
import signal
import subprocess
import sys
import time

import httpx

from services.snapshots.broker import free_port, is_listening
from tests.e2e.system import ROOT, snapshotctl


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_serves_the_demo_cluster_takes_its_snapshot_and_stops_cleanly_on_ctrl_c(tmp_path):
    kafka, http = f"127.0.0.1:{free_port()}", free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "SNAPSHOT_HTTP_PORT": str(http),
           "SNAPSHOT_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "services.snapshots", "up"], env=env, cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        token = wait_for(lambda: (tmp_path / "data" / "admin.token").is_file()
                         and (tmp_path / "data" / "admin.token").read_text().strip(), 60, "the admin token")
        auth = {"Authorization": f"Bearer {token}"}
        assert (tmp_path / "data" / "admin.token").stat().st_mode & 0o777 == 0o600
        wait_for(lambda: any(c["name"] == "dws-demo" for c in
                             httpx.get(f"http://127.0.0.1:{http}/clusters", headers=auth).json()["clusters"]),
                 90, "dws-demo in /clusters")
        created = snapshotctl("create", "dws-demo", "first-snapshot", "--wait", env=env)
        assert created.returncode == 0, created.stderr + (tmp_path / "up.log").read_text()
        snapshot = wait_for(lambda: (r := httpx.get(f"http://127.0.0.1:{http}/snapshots/first-snapshot", headers=auth)).status_code == 200
                            and r.json()["status"] == "Available" and r.json(), 30, "an Available snapshot")
        assert snapshot["cluster_name"] == "dws-demo" and snapshot["size_bytes"] > 0
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(40)
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert not is_listening(kafka), "the embedded broker outlived snapshotctl up"
    assert "stopped" in (tmp_path / "up.log").read_text()
