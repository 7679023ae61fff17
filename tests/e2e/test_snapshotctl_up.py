"""`snapshotctl up` on an empty data directory: everything on one machine."""

import json

import httpx

from services.snapshots.broker import is_listening
from tests.e2e.system import snapshotctl
from tests.e2e.up_process import Up, parts_of, wait_for


def test_up_serves_the_demo_cluster_takes_its_snapshot_and_stops_cleanly_on_ctrl_c(tmp_path):
    up = Up(tmp_path / "data").start()
    try:
        up.wait_until_serving()
        assert (tmp_path / "data" / "admin.token").stat().st_mode & 0o777 == 0o600
        created = snapshotctl("create", "dws-demo", "first-snapshot", "--wait", env=up.env)
        assert created.returncode == 0, created.stderr + up.log()
        snapshot = wait_for(lambda: (r := up.get("/snapshots/first-snapshot")).status_code == 200
                            and r.json()["status"] == "Available" and r.json(), 30, "an Available snapshot")
        assert snapshot["cluster_name"] == "dws-demo" and snapshot["size_bytes"] > 0
        # Counted by the service, shown by the API: up gave every part one metrics directory.
        metrics = httpx.get(f"http://127.0.0.1:{up.http_port}/metrics", timeout=10).text
        assert 'dws_snapshots_commands_total{outcome="accepted",type="CreateSnapshotRequested"} 1.0' in metrics
    finally:
        code = up.stop()
    assert code == 0, up.log()[-3000:]
    assert not is_listening(up.kafka), "the embedded broker outlived snapshotctl up"
    assert not parts_of(up.data_dir), "a part outlived snapshotctl up"
    assert not (up.data_dir / "up.pid").exists(), "a clean stop leaves no pid file"
    assert "stopped" in up.log()
    # Off a terminal, up and its parts write JSON lines, one object each.
    parts = {json.loads(line)["part"] for line in up.log().splitlines()}
    assert {"up", "service", "projection"} <= parts <= {"up", "service", "projection", "api"}
