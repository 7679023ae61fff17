"""The pid file of `snapshotctl up`: `<data dir>/up.pid`, and what a new `up` does with it.

The file names `up` and its children (the embedded broker and the parts), each by pid and
start time: a pid the kernel has handed to another process since is not taken for ours.
It is written atomically (a temporary file renamed over it) and removed on a clean stop,
so a file that is left names an `up` that crashed. A new `up` on the same data directory
    - refuses if the file names a live `snapshotctl up` (its /proc cmdline says so);
    - otherwise stops what is left of the old one: the processes the file names, and parts
      of this data directory that lead their own session with no `up` above them (what an
      `up` from before the pid file left behind): SIGTERM, then SIGKILL after a grace;
    - holds a lock on the data directory while it runs, so two `up`s starting at the same
      moment cannot both pass the check."""

import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path

import psutil

log = logging.getLogger("snapshotctl")
PARTS = ("service", "projection", "api")
FILE_NAME = "up.pid"


class AlreadyRunning(Exception):
    """Another `snapshotctl up` runs on this data directory."""


def snapshotctl_command(cmdline: list[str]) -> str | None:
    """`up`, `service`, ... for a `snapshotctl` or `python -m services.snapshots` command line."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "services.snapshots" or os.path.basename(arg) == "snapshotctl":
            return cmdline[i + 1]
    return None


def record(process: psutil.Process) -> dict:
    return {"pid": process.pid, "started": process.create_time()}


def alive(entry: dict | None) -> psutil.Process | None:
    """The process an entry of the file names, if it still runs (same pid, same start)."""
    try:
        process = psutil.Process(entry["pid"])
        return process if process.create_time() == entry["started"] else None
    except (psutil.Error, KeyError, TypeError):
        return None


class PidFile:
    def __init__(self, data_dir: Path):
        self.path = data_dir / FILE_NAME

    def read(self) -> dict:
        """What the file says; an unreadable or half-written file counts as empty."""
        try:
            content = json.loads(self.path.read_text())
            return content if isinstance(content, dict) else {}
        except (OSError, ValueError):
            return {}

    def write(self, children: dict[str, int]) -> None:
        """Name this process as `up` and `children` (name -> pid); atomic, so a reader never
        sees half a file."""
        content = {"up": record(psutil.Process()),
                   "children": {name: record(psutil.Process(pid)) for name, pid in children.items()}}
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".up.pid.",
                                         delete=False) as temporary:
            json.dump(content, temporary, indent=2)
            temporary.flush()
            os.fsync(temporary.fileno())
        os.replace(temporary.name, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def claim(data_dir: Path, grace_seconds: float) -> int:
    """Make this process the data directory's `up`: refuse if another runs, stop what a dead
    one left, write the pid file. Returns the lock's descriptor (held until exit)."""
    pid_file = PidFile(data_dir)
    previous = pid_file.read()
    _refuse_if_running(alive(previous.get("up")), data_dir)
    lock = os.open(data_dir, os.O_RDONLY)  # not inherited by children (PEP 446)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise AlreadyRunning(f"another snapshotctl up is starting on {data_dir.resolve()}") from None
    stop_leftovers(_leftovers(previous, data_dir), grace_seconds)
    if previous:
        log.info("replacing the stale pid file %s", pid_file.path)
    pid_file.write({})
    return lock


def _refuse_if_running(process: psutil.Process | None, data_dir: Path) -> None:
    try:
        if process and snapshotctl_command(process.cmdline()) == "up":
            raise AlreadyRunning(f"snapshotctl up (pid {process.pid}) is already running on "
                                 f"{data_dir.resolve()}; stop it first")
    except psutil.Error:
        pass  # it ended while we looked


def _leftovers(previous: dict, data_dir: Path) -> dict[int, tuple[str, psutil.Process]]:
    """What is left of earlier `up`s: the children the pid file names, and orphaned parts."""
    found = {}
    for name, entry in (previous.get("children") or {}).items():
        if process := alive(entry):
            found[process.pid] = (name, process)
    for process in _orphaned_parts(data_dir):
        found.setdefault(process.pid, (snapshotctl_command(process.cmdline()), process))
    return found


def _orphaned_parts(data_dir: Path):
    """Parts of this data directory that `up` started (each leads its own session) and whose
    `up` is gone. A part run by hand in a shell does not lead a session: it is left alone."""
    for process in psutil.process_iter():
        try:
            if (snapshotctl_command(process.cmdline()) in PARTS
                    and os.getsid(process.pid) == process.pid
                    and _data_dir_of(process) == data_dir.resolve()):
                parent = process.parent()
                if parent and snapshotctl_command(parent.cmdline()) == "up":
                    _refuse_if_running(parent, data_dir)  # an `up` without a pid file
                yield process
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read


def _data_dir_of(process: psutil.Process) -> Path:
    """The SNAPSHOT_DATA_DIR a part runs with (pydantic-settings reads names in any case)."""
    environment = {key.upper(): value for key, value in process.environ().items()}
    return (Path(process.cwd()) / environment.get("SNAPSHOT_DATA_DIR", ".snapshot-data")).resolve()


def stop_leftovers(leftovers: dict[int, tuple[str, psutil.Process]], grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL whatever still runs after the grace; each one is logged."""
    for name, process in leftovers.values():
        log.warning("stopping %s (pid %d) left running by an earlier snapshotctl up", name, process.pid)
        _quietly(process.terminate)
    processes = [process for _, process in leftovers.values()]
    _, stubborn = psutil.wait_procs(processes, timeout=grace_seconds)
    for process in stubborn:
        log.warning("killing pid %d: it ignored SIGTERM for %.0f s", process.pid, grace_seconds)
        _quietly(process.kill)
    psutil.wait_procs(stubborn, timeout=grace_seconds)


def _quietly(action) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass
