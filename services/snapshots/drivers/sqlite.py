"""The embedded `sqlite` driver: a cluster is a SQLite database file.

Read-only is SQLite's own write lock: the driver opens the file and holds `BEGIN IMMEDIATE`,
so every other writer gets "database is locked" while readers go on. The lock dies with
the process, so a crashed worker can never leave the file frozen. The snapshot is taken
with the SQLite backup API from a second, reading connection (SQLite refuses a backup
from a connection that holds a write transaction); since nobody can write meanwhile, the
copy is consistent."""

import hashlib
import sqlite3
from pathlib import Path
from urllib.request import pathname2url

from services.snapshots.drivers.base import DriverError, SnapshotFiles


class FrozenSQLite:
    def __init__(self, connection: sqlite3.Connection, uri: str, timeout: float):
        self._connection = connection
        self._uri = uri
        self._timeout = timeout

    def copy_to(self, directory: Path) -> SnapshotFiles:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "cluster.sqlite"
        try:
            source = sqlite3.connect(self._uri, uri=True, timeout=self._timeout)
            copy = sqlite3.connect(path)
            try:
                source.backup(copy)
            finally:
                copy.close()
                source.close()
        except sqlite3.Error as error:
            raise DriverError(f"backup failed: {error}") from error
        return SnapshotFiles(path=path, size_bytes=path.stat().st_size, sha256=_sha256(path))

    def release(self) -> None:
        try:
            self._connection.rollback()
        finally:
            self._connection.close()


class SQLiteDriver:
    name = "sqlite"

    def __init__(self, busy_timeout_seconds: float = 5.0):
        self._busy_timeout = busy_timeout_seconds

    def freeze(self, target: str) -> FrozenSQLite:
        path = Path(target)
        if not path.is_file():
            raise DriverError(f"cluster database file {target!r} does not exist")
        uri = f"file:{pathname2url(str(path.resolve()))}?mode=rw"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise DriverError(f"cannot lock {target!r} for writes: {error}") from error
        return FrozenSQLite(connection, uri, self._busy_timeout)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
