"""A command whose handling keeps failing is retried a few times, then dead-lettered with
the error: never dropped, never retried forever."""

import logging
from pathlib import Path

from events.codec import command_envelope, encode
from events.commands import RegisterCluster
from services.snapshots.application import SnapshotsApplication
from services.snapshots.intake import CommandIntake
from services.snapshots.bootstrap import make_workflow


class BrokenStore(SnapshotsApplication):
    def handle(self, command_id, command, *args, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        raise ConnectionError("event store unreachable")


async def test_a_command_that_keeps_failing_goes_to_the_dlq_with_the_error_after_bounded_retries(caplog):
    app = BrokenStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    dead = []

    async def dead_letter(value, key, headers):
        dead.append((value, dict(headers)))

    intake = CommandIntake(app, make_workflow(app, {}, Path("/unused"), 1), dead_letter,
                           attempts=3, backoff_seconds=0.01)
    raw = encode(command_envelope(RegisterCluster(cluster_name="dws-one", driver="sqlite", target="/x"),
                                  id="cmd-poison"))
    with caplog.at_level(logging.ERROR):
        assert await intake.receive(raw, b"dws-one") == "dead-lettered"
    assert app.calls == 3 and intake.dead_lettered == 1
    assert dead == [(raw, {"x-snapshot-error": b"command cmd-poison failed: ConnectionError: event store unreachable"})]
    assert "cmd-poison" in caplog.text
