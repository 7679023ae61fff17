"""Local staging for the S3 repository (a SQLite file before its upload, a dump downloaded
for a restore): each process stages under a directory of its own, `<data dir>/staging/
<pid>-<random>/`, created at first use and held with an exclusive `flock` on
`<pid>-<random>.lock` while the process lives. Files left by a process that died (a
SIGKILL mid-download) are removed by `sweep`, which the worker runs at start: a lock it
can take belongs to no living process. Several processes may share the data directory."""

import fcntl
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


class Staging:
    def __init__(self, root: Path):
        self.root = root
        self._path: Path | None = None
        self._lock = threading.Lock()

    def path(self) -> Path:
        """This process's staging directory (claimed at the first call)."""
        with self._lock:
            if self._path is None:
                self.root.mkdir(parents=True, exist_ok=True)
                name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                descriptor = os.open(self.root / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(descriptor, fcntl.LOCK_EX)  # held (never closed) until the process ends
                (self.root / name).mkdir()
                self._path = self.root / name
            return self._path

    def sweep(self) -> int:
        """Remove the staging directories of processes that died; how many."""
        removed = 0
        for lock in sorted(self.root.glob("*.lock")) if self.root.is_dir() else ():
            try:
                descriptor = os.open(lock, os.O_RDWR)
            except FileNotFoundError:  # swept by another process meanwhile
                continue
            try:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its process lives (this one's included)
                    continue
                log.info("removing %s: staged by a process that died", lock.with_suffix(""))
                shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
                lock.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(descriptor)
        return removed
