"""The embedded `sqlite` driver: a cluster is a SQLite database file.

Read-only is SQLite's own write lock: the driver opens the file and holds `BEGIN IMMEDIATE`,
so every other writer gets "database is locked" while readers go on. The lock dies with
the process, so a crashed worker can never leave the file frozen: `thaw(target)` and
`cleanup(target)` have nothing to do and `is_frozen(target)` is always False (a freeze
lives only as long as the handle that holds it, and `release` ends it).

The snapshot is taken with the SQLite backup API from a second, reading connection
(SQLite refuses a backup from a connection that holds a write transaction); since nobody
can write meanwhile, the copy is consistent. The backup runs `copy_step_pages` pages at a
time: between steps it reports progress (pages converted to bytes) and checks the cancel
event, so a cancelled copy stops within one step, removes its partial file and closes
its connections. Restore copies a verified snapshot to a new file."""

import shutil
import sqlite3
import threading
from pathlib import Path
from urllib.request import pathname2url

from events.vocabulary import name_key
from services.snapshots.drivers.base import (CopyCancelled, DriverError, Progress, SnapshotFiles,
                                             verify_manifest, write_manifest)

USER_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def _uri(path: Path) -> str:
    return f"file:{pathname2url(str(path.resolve()))}?mode=rw"


def _quoted(identifier: str) -> str:
    return '"{}"'.format(identifier.replace('"', '""'))


def _row_counts(db: sqlite3.Connection) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()[0]
            for (table,) in db.execute(USER_TABLES).fetchall()}


class FrozenSQLite:
    """A SQLite file whose write lock this handle holds until `release`."""

    def __init__(self, connection: sqlite3.Connection, path: Path, timeout: float, step_pages: int):
        self._connection = connection
        self._path = path
        self._timeout = timeout
        self._step_pages = step_pages

    def copy_to(self, directory: Path, cancel: threading.Event | None = None,
                progress: Progress | None = None) -> SnapshotFiles:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "cluster.sqlite"
        path.unlink(missing_ok=True)
        try:
            rows = self._backup(path, cancel, progress)
        except BaseException as error:  # a half-written copy must never look like a snapshot
            path.unlink(missing_ok=True)
            if isinstance(error, sqlite3.Error):
                raise DriverError(f"backup failed: {error}") from error
            raise
        return write_manifest(directory, path, driver="sqlite", sqlite_version=sqlite3.sqlite_version,
                              row_counts=rows)

    def _backup(self, path: Path, cancel: threading.Event | None, progress: Progress | None) -> dict:
        source = sqlite3.connect(_uri(self._path), uri=True, timeout=self._timeout)
        copy = sqlite3.connect(path)
        try:
            page_size = source.execute("PRAGMA page_size").fetchone()[0]

            def after_step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress((total - remaining) * page_size, total * page_size)
                if cancel is not None and cancel.is_set():
                    # Raising here makes sqlite3 finish (abort) the backup before re-raising.
                    raise CopyCancelled("the copy was cancelled")

            source.backup(copy, pages=self._step_pages, progress=after_step)
            return _row_counts(copy)
        finally:
            copy.close()
            source.close()

    def release(self) -> None:
        try:
            self._connection.rollback()
        finally:
            self._connection.close()

    def close(self) -> None:
        """The lock lives in this handle: letting go of it is releasing it."""
        self.release()

    def cleanup(self) -> None:
        """Nothing to remove: the lock was the whole freeze."""


class SQLiteDriver:
    """Clusters that are SQLite files on this machine."""

    name = "sqlite"

    def __init__(self, clusters_dir: Path, busy_timeout_seconds: float = 5.0,
                 forbidden: tuple[Path, ...] = (), copy_step_pages: int = 1024):
        self._clusters_dir = clusters_dir
        self._busy_timeout = busy_timeout_seconds
        self._step_pages = copy_step_pages
        # The service's own files (event store, views, snapshot repository): freezing one
        # of them would stop the service itself.
        self._forbidden = tuple(p.resolve() for p in forbidden)

    def freeze(self, target: str) -> FrozenSQLite:
        path = Path(target)
        resolved = path.resolve()
        if any(resolved == f or f in resolved.parents for f in self._forbidden):
            raise DriverError(f"{target!r} belongs to the snapshot service itself, not to a cluster")
        if not path.is_file():
            raise DriverError(f"cluster database file {target!r} does not exist")
        try:
            connection = sqlite3.connect(_uri(path), uri=True, timeout=self._busy_timeout,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise DriverError(f"cannot lock {target!r} for writes: {error}") from error
        return FrozenSQLite(connection, path, self._busy_timeout, self._step_pages)

    def thaw(self, target: str) -> None:
        """Nothing to do: the write lock died with the process that held it."""

    def cleanup(self, target: str) -> None:
        """Nothing to do: a freeze leaves nothing in the file."""

    def is_frozen(self, target: str) -> bool:
        return False  # no freeze outlives its handle (see the module docstring)

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        data_file = verify_manifest(directory, expected_sha256)
        self._clusters_dir.mkdir(parents=True, exist_ok=True)
        target = self._clusters_dir / f"{name_key(new_cluster_name)}.sqlite"
        if target.exists():
            raise DriverError(f"{target} already exists")
        shutil.copyfile(data_file, target)
        return str(target.resolve())
