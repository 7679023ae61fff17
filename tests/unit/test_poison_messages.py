"""A command whose handling keeps failing deterministically (a bug) is retried a few times,
then answered with one `CommandRejected` `internal_error` and dead-lettered with the
error: never dropped, never retried forever. The DLQ itself failing is retried."""

import logging
from pathlib import Path

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from eventsourcing.persistence import OperationalError

from events.codec import command_envelope, encode
from events.commands import RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.handlers import COMMAND_HANDLERS
from services.snapshots.intake import CommandIntake
from services.snapshots.bootstrap import make_workflow

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class Store(SnapshotsApplication):
    """A real in-memory store."""

    def rejections(self) -> list:
        return [self.mapper.to_domain_event(n) for n in self.recorder.select_notifications(1, 100)
                if n.topic.endswith("CommandRejected")]


class StoreAwayWhileRejecting(Store):
    """Recording a rejection fails with a lost connection `away` times first."""

    away = 2

    def reject_invalid(self, *args, **kwargs):
        if self.away:
            self.away -= 1
            raise OperationalError("server closed the connection") from psycopg.OperationalError("closed")
        return super().reject_invalid(*args, **kwargs)


@pytest.fixture
def buggy_handler(monkeypatch) -> list:
    """The RegisterCluster handler raises a bug; returns the list of its calls."""
    calls = []

    def register_cluster(app, command, command_id):
        calls.append(command_id)
        raise KeyError("no such field 'cluster' (password=hunter2)")

    monkeypatch.setitem(COMMAND_HANDLERS, RegisterCluster, register_cluster)
    return calls


class DeadLetters:
    """The DLQ topic as a list; `failures` sends fail first with the given errors."""

    def __init__(self, *failures: Exception):
        self.records, self.failures = [], list(failures)

    async def __call__(self, value, key, headers):
        if self.failures:
            raise self.failures.pop(0)
        self.records.append((value, dict(headers)))


def intake_for(app, dead: DeadLetters, attempts: int = 3) -> CommandIntake:
    return CommandIntake(app, make_workflow(app, {}, Path("/unused"), 1), dead,
                         attempts=attempts, backoff_seconds=0.001)


def register(command_id: str = "cmd-poison") -> bytes:
    command = RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/x")
    return encode(command_envelope(command, id=command_id))


async def test_a_command_that_keeps_failing_is_answered_internal_error_and_dead_lettered(buggy_handler, caplog):
    app, dead, raw = Store(env=POPO), DeadLetters(), register()
    with caplog.at_level(logging.ERROR):
        assert await intake_for(app, dead).receive(raw, b"dws-one") == "dead-lettered"
    assert buggy_handler == ["cmd-poison"] * 3
    error = "command cmd-poison failed: KeyError: \"no such field 'cluster' (password=***)\""
    assert dead.records == [(raw, {"x-snapshot-error": error.encode()})]
    [rejection] = app.rejections()
    assert (rejection.command_id, rejection.code) == ("cmd-poison", "internal_error")
    assert rejection.reason.startswith("KeyError: ") and "hunter2" not in rejection.reason
    assert "cmd-poison" in caplog.text and "hunter2" not in caplog.text


async def test_a_poison_command_delivered_again_is_a_duplicate_of_its_internal_error(buggy_handler):
    app, dead = Store(env=POPO), DeadLetters()
    intake = intake_for(app, dead)
    await intake.receive(register(), b"dws-one")
    assert await intake.receive(register(), b"dws-one") == "duplicate"
    assert len(dead.records) == 1 and len(buggy_handler) == 3
    assert [r.code for r in app.rejections()] == ["internal_error"]


async def test_an_internal_error_whose_recording_meets_an_outage_is_recorded_once_the_store_is_back(
        buggy_handler, caplog):
    app, dead = StoreAwayWhileRejecting(env=POPO), DeadLetters()
    with caplog.at_level(logging.WARNING):
        assert await intake_for(app, dead).receive(register(), b"dws-one") == "dead-lettered"
    assert [r.code for r in app.rejections()] == ["internal_error"] and len(dead.records) == 1
    assert caplog.text.count("command cmd-poison paused: recording its internal_error failed") == 2


async def test_a_dlq_send_that_fails_is_retried_until_the_broker_takes_it(caplog):
    dead = DeadLetters(KafkaConnectionError("no broker"), RuntimeError("producer closed"))
    app = SnapshotsApplication(env=POPO)
    with caplog.at_level(logging.WARNING):
        assert await intake_for(app, dead).receive(b"{not json", b"k") == "dead-lettered"
    assert [value for value, _ in dead.records] == [b"{not json"]
    assert caplog.text.count("paused: sending it to the DLQ failed") == 2


async def test_a_record_too_large_for_the_dlq_is_sent_cut_with_its_size_not_retried_forever():
    dead = DeadLetters(MessageSizeTooLargeError("too large"))
    raw = b"x" * 200_000
    assert await intake_for(SnapshotsApplication(env=POPO), dead).receive(raw, b"k") == "dead-lettered"
    [(value, headers)] = dead.records
    assert raw.startswith(value) and len(value) < len(raw)
    assert headers["x-snapshot-truncated"] == b"200000" and headers["x-snapshot-error"]
