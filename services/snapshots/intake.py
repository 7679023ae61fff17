"""Command intake: raw Kafka record → decoded command → application → workflow.

Bytes that are not a CloudEvent go to the DLQ with the error in a header; a decodable
envelope with a bad type or data is answered with one `CommandRejected`; nothing here
raises into the consumer loop for bad input."""

import logging
from collections.abc import Awaitable, Callable

from events import topics
from events.codec import CommandInvalid, Undecodable, decode, parse_command
from services.snapshots.application import SnapshotsApplication
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)

#: (value, key, headers) → None; sends a record to the DLQ topic.
DeadLetter = Callable[[bytes, bytes | None, list], Awaitable[None]]


class CommandIntake:
    def __init__(self, app: SnapshotsApplication, workflow: SnapshotWorkflow,
                 dead_letter: DeadLetter):
        self._app = app
        self._workflow = workflow
        self._dead_letter = dead_letter
        self.dead_lettered = 0

    async def receive(self, value: bytes | None, key: bytes | None = None) -> str:
        try:
            envelope = decode(value)
        except Undecodable as error:
            return await self._send_to_dlq(value, key, str(error))
        cluster_name = str(envelope.data.get("cluster_name") or envelope.subject or "")[:256]
        try:
            command = parse_command(envelope)
        except CommandInvalid as invalid:
            log.info("command %s rejected: %s", envelope.id, invalid.reason)
            return self._app.reject_invalid(envelope.id, envelope.type, cluster_name,
                                            invalid.code, invalid.reason)
        outcome = self._app.handle(envelope.id, command)
        log.info("command %s %s %s", envelope.id, envelope.type, outcome)
        if outcome == "accepted":
            self._workflow.on_accepted(command)
        return outcome

    async def _send_to_dlq(self, value: bytes | None, key: bytes | None, error: str) -> str:
        self.dead_lettered += 1
        log.warning("undecodable command sent to the DLQ (%d so far): %s", self.dead_lettered, error)
        await self._dead_letter(value or b"", key, [(topics.DLQ_ERROR_HEADER, error.encode("utf-8"))])
        return "dead-lettered"
