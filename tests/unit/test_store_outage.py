"""While the event store is away, the intake pauses on the command and retries it until the
store is back: the outage counts toward no attempt limit, nothing is dead-lettered, and
the command gets exactly one outcome. (Unit tests: the outage is a fake store raising
the errors the real drivers raise; tests/integration/test_store_outage.py stops a real
PostgreSQL server.)"""

import logging
import sqlite3
from pathlib import Path

import eventsourcing.persistence as es
import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from events.codec import command_envelope, encode
from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import SnapshotFiles
from services.snapshots.intake import CommandIntake, is_infrastructure_error
from services.snapshots.bootstrap import make_workflow

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def wrapped(driver_error: Exception, wrapper=es.OperationalError) -> Exception:
    """The error as eventsourcing raises it: its own class, the driver's error as cause."""
    try:
        raise wrapper(str(driver_error)) from driver_error
    except es.PersistenceError as error:
        return error


def connection_lost() -> Exception:
    return wrapped(psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"))


class StoreWithOutage(SnapshotsApplication):
    """A real in-memory store whose reads and writes fail while `outage` calls remain."""

    outage = 0

    def _fail_while_away(self) -> None:
        if self.outage > 0:
            self.outage -= 1
            raise connection_lost()

    def find(self, aggregate_id):
        self._fail_while_away()
        return super().find(aggregate_id)

    def save(self, *objs, **kwargs):
        self._fail_while_away()
        return super().save(*objs, **kwargs)

    def stored(self) -> list[str]:
        return [type(self.mapper.to_domain_event(n)).__name__ for n in self.recorder.select_notifications(1, 100)]


class DeadLetters(list):
    async def __call__(self, value, key, headers):
        self.append(value)


def intake_for(app, workflow=None, dead=None) -> CommandIntake:
    workflow = workflow or make_workflow(app, {}, Path("/unused"), 1)
    return CommandIntake(app, workflow, dead if dead is not None else DeadLetters(),
                         attempts=5, backoff_seconds=0.001, max_backoff_seconds=0.004)


def raw(command, command_id: str) -> bytes:
    return encode(command_envelope(command, id=command_id))


@pytest.mark.parametrize("error", [
    psycopg.OperationalError("connection refused"),
    connection_lost(),
    wrapped(psycopg.InterfaceError("the connection is closed"), es.InterfaceError),
    wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
    wrapped(sqlite3.OperationalError("database is locked")),
    wrapped(sqlite3.OperationalError("disk I/O error")),
    wrapped(sqlite3.OperationalError("unable to open database file"), es.InterfaceError),
    wrapped(psycopg.DatabaseError("server closed the connection"), es.DatabaseError),
    es.ConnectionUnavailableError("timed out waiting for a connection"),
    KafkaConnectionError("no broker"), KafkaTimeoutError(), ConnectionRefusedError(),
], ids=repr)
def test_an_error_saying_a_part_is_away_is_an_infrastructure_error(error):
    assert is_infrastructure_error(error)


@pytest.mark.parametrize("error", [
    KeyError("cluster"), TypeError("bad argument"), RuntimeError("bug"),
    wrapped(psycopg.errors.UndefinedTable("relation does not exist"), es.ProgrammingError),
    wrapped(psycopg.errors.UniqueViolation("duplicate key"), es.IntegrityError),
    wrapped(sqlite3.OperationalError("no such table: stored_events")),
    es.OperationalError("Can't do multi-row tracking with single-row tracking table"),
], ids=repr)
def test_any_other_error_is_deterministic(error):
    assert not is_infrastructure_error(error)


async def test_an_outage_longer_than_the_attempt_limit_ends_in_one_accepted_outcome_and_no_dlq(caplog):
    app, dead = StoreWithOutage(env=POPO), DeadLetters()
    app.outage = 12  # more failed calls than the 5 attempts a bug gets
    command = RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/x")
    with caplog.at_level(logging.WARNING):
        assert await intake_for(app, dead=dead).receive(raw(command, "cmd-1"), b"dws-one") == "accepted"
    assert app.stored() == ["CommandReceived", "ClusterRegistered"]
    assert dead == []
    paused = [r for r in caplog.records if "paused" in r.getMessage()]
    assert len(paused) == 12 and all(r.levelname == "WARNING" and "cmd-1" in r.getMessage() for r in paused)


async def test_a_rejection_during_an_outage_is_recorded_once_when_the_store_is_back():
    app = StoreWithOutage(env=POPO)
    app.outage = 7
    command = CreateSnapshotRequested(cluster_name="dws-none", snapshot_name="nightly-01")
    assert await intake_for(app).receive(raw(command, "cmd-2"), b"dws-none") == "rejected"
    assert app.stored() == ["CommandReceived", "CommandRejected"]


class CommitThenLoseConnection(StoreWithOutage):
    """The save commits, then the connection drops before the commit is confirmed."""

    lose_after_commit = 1

    def save(self, *objs, **kwargs):
        recordings = super().save(*objs, **kwargs)
        if self.lose_after_commit and any(type(o).__name__ == "Snapshot" for o in objs):
            self.lose_after_commit -= 1
            raise connection_lost()
        return recordings


class CopyingDriver:
    name = "copying"

    def freeze(self, target):
        class Frozen:
            def copy_to(self, directory, cancel=None, progress=None):
                return SnapshotFiles(directory, 10, "")

            def release(self):
                pass

            def close(self):
                pass

        return Frozen()

    def thaw(self, target):
        pass

    def cleanup(self, target):
        pass

    def is_frozen(self, target):
        return False


async def test_a_snapshot_whose_commit_was_not_confirmed_still_runs_its_workflow(tmp_path):
    app = CommitThenLoseConnection(env=POPO)
    app.handle("reg", RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/x"))
    workflow = make_workflow(app, {"sqlite": CopyingDriver()}, tmp_path, 5)
    command = CreateSnapshotRequested(cluster_name="dws-one", snapshot_name="nightly-01")
    assert await intake_for(app, workflow).receive(raw(command, "cmd-3"), b"dws-one") == "duplicate"
    await workflow.wait_idle()
    assert app.get_snapshot("nightly-01").status == "Available"
    assert app.get_cluster("dws-one").task_status is None
    assert app.stored().count("SnapshotStarted") == 1
