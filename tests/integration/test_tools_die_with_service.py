"""pg_dump and pg_restore die with the service, even by SIGKILL: whether their output goes
to a file (`run_tool`) or is streamed to the repository (`stream_tool`, an S3 upload)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVICE = """
import sys
from services.snapshots.drivers.tools import run_tool, stream_tool
tool = ["sh", "-c", "echo $$ > " + sys.argv[2] + ".partial && mv " + sys.argv[2] + ".partial " + sys.argv[2]
        + " && exec sleep 300"]
if sys.argv[1] == "stream":
    stream_tool(tool, {"PATH": "/usr/bin:/bin"}, 600, lambda block: None)
else:
    run_tool(tool, {"PATH": "/usr/bin:/bin"}, 600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", ["stream", "file"])
def test_the_tool_dies_when_the_service_is_killed(tmp_path, how):
    pid_file = tmp_path / "tool.pid"
    service = subprocess.Popen([sys.executable, "-c", SERVICE, how, str(pid_file)])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert service.poll() is None and time.monotonic() < deadline, "the tool did not start"
            time.sleep(0.05)
        tool = int(pid_file.read_text())
        assert _alive(tool)
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait()
    deadline = time.monotonic() + 60
    while _alive(tool) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(tool):
        os.kill(tool, signal.SIGKILL)
        pytest.fail(f"the tool ({how}) outlived the service")
