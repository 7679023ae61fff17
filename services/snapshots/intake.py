"""Command intake: raw Kafka record → decoded command → application → workflow.

Bytes that are not a CloudEvent go to the DLQ with the error in a header; a decodable
envelope with a bad type or data is answered with one `CommandRejected`. A command whose
handling keeps failing (the store is down, or a bug) is retried with backoff a few times,
then dead-lettered with the error and logged with its id: never dropped silently, never
retried forever. Nothing here raises into the consumer loop. Store calls run in the
store's thread pool, never on the event loop."""

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from events.codec import CommandInvalid, Undecodable, decode, parse_command
from events.envelope import Envelope
from events.kafka import DLQ_ERROR_HEADER
from services.snapshots.application import Outcome, SnapshotsApplication
from services.snapshots.domain import CommandContext
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)

#: (value, key, headers) → None; sends a record to the DLQ topic.
DeadLetter = Callable[[bytes, bytes | None, list], Awaitable[None]]


class CommandIntake:
    def __init__(self, app: SnapshotsApplication, workflow: SnapshotWorkflow,
                 dead_letter: DeadLetter, store: ThreadPool | None = None, attempts: int = 5,
                 backoff_seconds: float = 0.2):
        self._app = app
        self._workflow = workflow
        self._dead_letter = dead_letter
        self._store = store or ThreadPool(1, "store")
        self._attempts = attempts
        self._backoff = backoff_seconds
        self.dead_lettered = 0

    async def receive(self, value: bytes | None, key: bytes | None = None,
                      partition: int | None = None) -> Outcome:
        """Handle one record; `partition` is where it arrived (its workflow belongs to it)."""
        try:
            envelope = decode(value)
        except Undecodable as error:
            log.warning("undecodable command: %s", error)
            return await self._send_to_dlq(value, key, str(error))
        for attempt in range(self._attempts):
            try:
                return await self._handle(envelope, partition)
            except Exception as error:  # noqa: BLE001 - whatever it is, retry, then dead-letter
                failure = f"{type(error).__name__}: {error}"
                log.warning("command %s failed (attempt %d of %d): %s",
                            envelope.id, attempt + 1, self._attempts, failure)
                await asyncio.sleep(self._backoff * 2 ** attempt)
        log.error("command %s (%s) dead-lettered after %d attempts: %s",
                  envelope.id, envelope.type, self._attempts, failure)
        return await self._send_to_dlq(value, key, f"command {envelope.id} failed: {failure}")

    async def _handle(self, envelope: Envelope, partition: int | None) -> Outcome:
        cluster_name = str(envelope.data.get("cluster_name") or envelope.subject or "")[:256]
        try:
            command = parse_command(envelope)
        except CommandInvalid as invalid:
            log.info("command %s rejected: %s", envelope.id, invalid.reason)
            return await self._store.run(self._app.reject_invalid, envelope.id, envelope.type,
                                         cluster_name, invalid.code, invalid.reason,
                                         context=command_context(envelope))
        outcome = await self._store.run(self._app.handle, envelope.id, command,
                                        context=command_context(envelope))
        log.info("command %s %s %s", envelope.id, envelope.type, outcome)
        if outcome == Outcome.ACCEPTED:
            self._workflow.on_accepted(command, partition)
        return outcome

    async def _send_to_dlq(self, value: bytes | None, key: bytes | None, error: str) -> Outcome:
        self.dead_lettered += 1
        log.warning("poison message #%d sent to the DLQ: %s", self.dead_lettered, error)
        await self._dead_letter(value or b"", key, [(DLQ_ERROR_HEADER, error.encode("utf-8"))])
        return Outcome.DEAD_LETTERED


#: W3C trace context: version-traceid-parentid-flags, lower-case hex, ids not all zero.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def command_context(envelope: Envelope) -> CommandContext:
    """Who issued the command, as its CloudEvents authcontext says (none: the bus carried
    it without one), and its trace context if valid (an invalid one is ignored, as W3C
    asks, rather than refusing the command)."""
    traceparent = envelope.traceparent if envelope.traceparent and TRACEPARENT.fullmatch(envelope.traceparent) else None
    return CommandContext(authtype=envelope.authtype or "unauthenticated", authid=envelope.authid,
                          traceparent=traceparent, tracestate=envelope.tracestate if traceparent else None)
