"""Staged files of a process that died (a SIGKILL mid-download or mid-upload) are removed
at the next start; those of living processes, sharing the data directory, are kept."""

import signal
import subprocess
import sys

from services.snapshots.staging import Staging

STAGER = """
import sys, time
from pathlib import Path
from services.snapshots.staging import Staging
path = Staging(Path(sys.argv[1])).path()
(path / "database.pgdump").write_bytes(b"x" * 1000)
print(path.name, flush=True)
time.sleep(300)
"""


def stage_in_a_process(root) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", STAGER, str(root)], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def test_the_staging_of_a_dead_process_is_swept_and_a_living_ones_kept(tmp_path):
    root = tmp_path / "staging"
    dead, dead_name = stage_in_a_process(root)
    living, living_name = stage_in_a_process(root)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        mine = Staging(root)
        (mine.path() / "cluster.sqlite").write_bytes(b"y")
        assert Staging(root).sweep() == 1  # another instance starting, in this very process
        assert sorted(p.name for p in root.iterdir()) == sorted(
            [living_name, f"{living_name}.lock", mine.path().name, f"{mine.path().name}.lock"])
        assert (root / living_name / "database.pgdump").exists() and (mine.path() / "cluster.sqlite").exists()
    finally:
        living.kill()
        living.wait()
        dead.stdout.close()
        living.stdout.close()
    assert Staging(root).sweep() == 1
    assert sorted(p.name for p in root.iterdir()) == sorted([mine.path().name, f"{mine.path().name}.lock"])
