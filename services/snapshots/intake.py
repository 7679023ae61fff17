"""Command intake: raw Kafka record → decoded command → application → workflow.

Bytes that are not a CloudEvent go to the DLQ with the error in a header; a decodable
envelope with a bad type or data is answered with one `CommandRejected`. A command whose
handling keeps failing (the store is down, or a bug) is retried with backoff a few times,
then dead-lettered with the error and logged with its id: never dropped silently, never
retried forever. Nothing here raises into the consumer loop. Store calls run in the
store's thread pool, never on the event loop."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from events.codec import CommandInvalid, Undecodable, decode, parse_command
from events.envelope import Envelope
from events.kafka import DLQ_ERROR_HEADER
from services.snapshots import logs, metrics
from services.snapshots.application import Outcome, SnapshotsApplication
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
            metrics.command_handled("", Outcome.DEAD_LETTERED)
            return await self._send_to_dlq(value, key, str(error), "undecodable")
        with logs.bound(**command_fields(envelope)):  # every line about it, the workflow's too
            outcome = await self._receive(envelope, value, key, partition)
        metrics.command_handled(envelope.type, outcome)
        return outcome

    async def _receive(self, envelope: Envelope, value: bytes | None, key: bytes | None,
                       partition: int | None) -> Outcome:
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
        return await self._send_to_dlq(value, key, f"command {envelope.id} failed: {failure}", "failed")

    async def _handle(self, envelope: Envelope, partition: int | None) -> Outcome:
        cluster_name = str(envelope.data.get("cluster_name") or envelope.subject or "")[:256]
        try:
            command = parse_command(envelope)
        except CommandInvalid as invalid:
            log.info("command %s rejected: %s", envelope.id, invalid.reason)
            return await self._store.run(self._app.reject_invalid, envelope.id, envelope.type,
                                         cluster_name, invalid.code, invalid.reason)
        outcome = await self._store.run(self._app.handle, envelope.id, command)
        log.info("command %s %s %s", envelope.id, envelope.type, outcome)
        if outcome == Outcome.ACCEPTED:
            self._workflow.on_accepted(command, partition)
        return outcome

    async def _send_to_dlq(self, value: bytes | None, key: bytes | None, error: str,
                           reason: str) -> Outcome:
        self.dead_lettered += 1
        metrics.DEAD_LETTERED.labels(reason).inc()
        log.warning("poison message #%d sent to the DLQ: %s", self.dead_lettered, error)
        await self._dead_letter(value or b"", key, [(DLQ_ERROR_HEADER, error.encode("utf-8"))])
        return Outcome.DEAD_LETTERED


def command_fields(envelope: Envelope) -> dict:
    """What log lines about a command carry (logs.py); its events are correlated by its id."""
    data = envelope.data
    return {"command_id": envelope.id, "correlation_id": envelope.correlationid or envelope.id,
            "cluster": _short(data.get("cluster_name") or envelope.subject),
            "snapshot": _short(data.get("snapshot_name"))}


def _short(value) -> str | None:
    return None if value is None else str(value)[:256]  # a hostile command's field may be huge
