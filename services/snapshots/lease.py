"""Leases: exactly one holder at a time among every instance that shares an event store.

The relay publishes only while it holds the relay lease, so N service instances publish
every event once, not N times. A lease dies with its holder (a PostgreSQL session-level
advisory lock is released when the session ends; an flock when the process dies), so a
crashed holder is replaced at the next attempt of another instance. A holder cut off from
PostgreSQL notices at its next check and stops; at most the batch it was publishing is
published twice, which consumers deduplicate by event id."""

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import psycopg

log = logging.getLogger(__name__)


class Lease(Protocol):
    def acquire(self) -> bool:
        """Try once, without waiting; True when this instance holds the lease now."""

    def held(self) -> bool:
        """Still held? (False after the holder lost its hold, e.g. its connection.)"""

    def release(self) -> None: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lease name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresLease:
    """A session-level advisory lock on the event store's database."""

    def __init__(self, conninfo: dict, name: str):
        self._conninfo = conninfo
        self._key = lock_key(name)
        self._connection: psycopg.Connection | None = None

    def acquire(self) -> bool:
        if self.held():
            return True
        self.release()
        try:
            self._connection = psycopg.connect(**self._conninfo, autocommit=True, connect_timeout=5)
            got = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]
        except psycopg.Error as error:
            log.warning("lease: cannot reach PostgreSQL: %s", error)
            got = False
        if not got:
            self.release()
        return got

    def held(self) -> bool:
        if self._connection is None or self._connection.closed:
            return False
        try:  # the lock lives as long as this session: prove the session is alive
            self._connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # ends the session, and with it the lock
            self._connection = None


class FileLease:
    """An exclusive flock on a file next to a SQLite event store (one host)."""

    def __init__(self, path: Path):
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class SoleLease:
    """For an in-memory store: only one process can see it, so it always holds."""

    def acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass
