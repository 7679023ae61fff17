"""The embedded `sqlite` driver: a cluster is a SQLite database file.

Read-only is SQLite's own write lock: the driver opens the file and holds `BEGIN IMMEDIATE`,
so every other writer gets "database is locked" while readers go on. The lock dies with
the process, so a crashed worker can never leave the file frozen. The snapshot is taken
with the SQLite backup API from a second, reading connection (SQLite refuses a backup
from a connection that holds a write transaction); since nobody can write meanwhile, the
copy is consistent. Restore copies a verified snapshot to a new file."""

import shutil
import sqlite3
from pathlib import Path
from urllib.request import pathname2url

from services.snapshots.drivers.base import DriverError, SnapshotFiles, verify_manifest, write_manifest


def _uri(path: Path) -> str:
    return f"file:{pathname2url(str(path.resolve()))}?mode=rw"


class FrozenSQLite:
    def __init__(self, connection: sqlite3.Connection, path: Path, timeout: float):
        self._connection = connection
        self._path = path
        self._timeout = timeout

    def copy_to(self, directory: Path) -> SnapshotFiles:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "cluster.sqlite"
        path.unlink(missing_ok=True)
        try:
            source = sqlite3.connect(_uri(self._path), uri=True, timeout=self._timeout)
            copy = sqlite3.connect(path)
            try:
                source.backup(copy)
                rows = {table: copy.execute('SELECT count(*) FROM "{}"'.format(table.replace('"', '""'))).fetchone()[0]
                        for (table,) in copy.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            finally:
                copy.close()
                source.close()
        except sqlite3.Error as error:
            raise DriverError(f"backup failed: {error}") from error
        return write_manifest(directory, path, driver="sqlite", sqlite_version=sqlite3.sqlite_version,
                              row_counts=rows)

    def release(self) -> None:
        try:
            self._connection.rollback()
        finally:
            self._connection.close()


class SQLiteDriver:
    name = "sqlite"

    def __init__(self, clusters_dir: Path, busy_timeout_seconds: float = 5.0,
                 forbidden: tuple[Path, ...] = ()):
        self._clusters_dir = clusters_dir
        self._busy_timeout = busy_timeout_seconds
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
        return FrozenSQLite(connection, path, self._busy_timeout)

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        data_file = verify_manifest(directory, expected_sha256)
        self._clusters_dir.mkdir(parents=True, exist_ok=True)
        target = self._clusters_dir / f"{new_cluster_name.lower()}.sqlite"
        if target.exists():
            raise DriverError(f"{target} already exists")
        shutil.copyfile(data_file, target)
        return str(target.resolve())
