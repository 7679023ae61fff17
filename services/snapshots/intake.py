"""Command intake: raw Kafka record → decoded command → application → workflow.

Bytes that are not a CloudEvent go to the DLQ with the error in a header; a decodable
envelope with a bad type or data is answered with one `CommandRejected`. Failures come in
two kinds, told apart by `is_infrastructure_error`:

- a part is away (the event store unreachable or locked, the broker unreachable when
  dead-lettering): the intake pauses on that command and retries it with capped backoff
  until the part is back, logging each retry at WARNING. These pauses count toward no
  limit: the command is neither dropped nor dead-lettered. The agent awaits the intake, so
  the consumer does not move past the command and its offset is not committed (faust
  commits an offset only after the agent has finished with the record); a worker killed
  while paused gets the command again.
- anything else (a bug) is deterministic: a few attempts with backoff, then the command
  gets one `CommandRejected` `internal_error` in the store (its sender is answered) and
  goes to the DLQ with the error, logged with its id.

Nothing here raises into the consumer loop. Store calls run in the store's thread pool,
never on the event loop."""

import asyncio
import itertools
from collections import defaultdict
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import eventsourcing.persistence as es
import psycopg
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from events.codec import CommandInvalid, Undecodable, decode, parse_command
from events.envelope import Envelope
from events.kafka import DLQ_ERROR_HEADER
from events.vocabulary import RejectionCode
from services.snapshots import logs, metrics
from services.snapshots.application import Outcome, SnapshotsApplication, payload_sha256
from services.snapshots.domain import CommandContext
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)

T = TypeVar("T")

#: (value, key, headers) → None; sends a record to the DLQ topic.
DeadLetter = Callable[[bytes, bytes | None, list], Awaitable[None]]

#: SQLite errors that say the file is busy or the disk is unwell, not that the SQL is wrong.
_SQLITE_AWAY = ("locked", "busy", "disk i/o", "unable to open", "disk is full", "readonly database")
#: What a generic database error says when the connection, not the statement, failed.
_CONNECTION_WORDS = ("connect", "server closed", "terminat", "shutdown", "timeout", "timed out")
#: Part of a DLQ record's value kept when the whole record is larger than the broker takes.
DLQ_VALUE_LIMIT = 64 * 1024


def is_infrastructure_error(error: BaseException) -> bool:
    """Whether `error` says a part the intake depends on is away (retry until it is back)
    rather than that this command cannot be handled (bounded attempts, then the DLQ).
    The innermost cause that tells decides: eventsourcing wraps the driver's error."""
    for cause in reversed(_causes(error)):
        verdict = _judge(cause)
        if verdict is not None:
            return verdict
    return False


def _causes(error: BaseException | None) -> list[BaseException]:
    """`error` and its explicit causes (`raise ... from`), outermost first."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__
    return chain


def _judge(error: BaseException) -> bool | None:
    """True: a part is away; False: deterministic; None: this link does not tell."""
    if isinstance(error, sqlite3.Error):
        return any(words in str(error).lower() for words in _SQLITE_AWAY)
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True  # connection lost or refused, server shutting down, pool timeout
    if isinstance(error, KafkaError):
        return not isinstance(error, MessageSizeTooLargeError)
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if type(error) in (es.DatabaseError, psycopg.DatabaseError):
        return any(words in str(error).lower() for words in _CONNECTION_WORDS)
    if isinstance(error, (es.OperationalError, es.InterfaceError)):
        return None  # decided by its cause; without one, a setup error
    return False


def _resendable(error: BaseException) -> bool:
    """A failed DLQ send is retried whatever failed (a dead-lettered command is never
    dropped), except a record the broker can never take."""
    return not isinstance(error, MessageSizeTooLargeError)


def describe(error: BaseException) -> str:
    """The error's type and message, trimmed, without credentials (it is logged, stored
    in a `CommandRejected` and put in a DLQ header)."""
    text = f"{type(error).__name__}: {error}"
    text = re.sub(r"(://[^/\s:@]*:)[^@\s]*@", r"\1***@", text)
    text = re.sub(r"(password\s*[=:]\s*)[^\s'\"),;&]+", r"\1***", text, flags=re.IGNORECASE)
    return text[:500]


def _cluster_of(envelope: Envelope) -> str:
    return str(envelope.data.get("cluster_name") or envelope.subject or "")[:256]


class CommandIntake:
    def __init__(self, app: SnapshotsApplication, workflow: SnapshotWorkflow,
                 dead_letter: DeadLetter, store: ThreadPool | None = None, attempts: int = 5,
                 backoff_seconds: float = 0.2, max_backoff_seconds: float = 5.0):
        self._app = app
        self._workflow = workflow
        self._dead_letter = dead_letter
        self._store = store or ThreadPool(1, "store")
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self.dead_lettered = 0
        #: Retries while a part was away, over the intake's life.
        self.pauses = 0

    async def receive(self, value: bytes | None, key: bytes | None = None,
                      partition: int | None = None) -> Outcome:
        """Handle one raw record; returns when it has its outcome (or is in the DLQ).
        `partition` is where it arrived: its workflow belongs to that partition."""
        try:
            envelope = decode(value)
        except Undecodable as error:
            log.warning("undecodable command: %s", error)
            metrics.command_handled("", Outcome.DEAD_LETTERED)
            return await self._send_to_dlq(value, key, str(error), "(undecodable)", "undecodable")
        with logs.bound(**command_fields(envelope)):  # every line about it, the workflow's too
            outcome = await self._receive(envelope, value, key, partition)
        metrics.command_handled(envelope.type, outcome)
        return outcome

    async def receive_many(self, records: Sequence[tuple[bytes | None, bytes | None, int | None]]) -> list[Outcome]:
        """Handle records that arrived together: (value, key, partition) each. Records of
        one key (one cluster) are handled one after the other, in arrival order; different
        keys at the same time, so their saves share transactions (group_commit.py). Each
        record gets its own outcome, exactly as `receive` gives it; returns them in order."""
        by_key: dict[bytes | None, list[int]] = defaultdict(list)
        for index, (_, key, _) in enumerate(records):
            by_key[key.lower() if key else key].append(index)
        outcomes: list[Outcome | None] = [None] * len(records)

        async def in_order(indexes: list[int]) -> None:
            for index in indexes:
                outcomes[index] = await self.receive(*records[index])
        await asyncio.gather(*(in_order(indexes) for indexes in by_key.values()))
        return outcomes

    async def _receive(self, envelope: Envelope, value: bytes | None, key: bytes | None,
                       partition: int | None) -> Outcome:
        digest = payload_sha256(envelope.type, envelope.data)
        try:
            return await self._process(envelope, digest, partition)
        except Exception as error:  # noqa: BLE001 - deterministic: answer it, then the DLQ
            return await self._give_up(envelope, digest, value, key, describe(error))

    async def _process(self, envelope: Envelope, digest: str, partition: int | None) -> Outcome:
        """Bounded attempts against deterministic failures; pauses do not count."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._until_back(envelope.id, "handling it",
                                              lambda: self._handle(envelope, digest, partition))
            except Exception as error:  # noqa: BLE001 - retried a few times, then given up
                if attempt == self._attempts:
                    raise
                log.warning("command %s failed (attempt %d of %d): %s",
                            envelope.id, attempt, self._attempts, describe(error))
                await asyncio.sleep(self._delay(attempt - 1))
        raise AssertionError("unreachable")

    async def _handle(self, envelope: Envelope, digest: str, partition: int | None) -> Outcome:
        try:
            command = parse_command(envelope)
        except CommandInvalid as invalid:
            log.info("command %s rejected: %s", envelope.id, invalid.reason)
            return await self._store.run(self._app.reject_invalid, envelope.id, envelope.type,
                                         _cluster_of(envelope), invalid.code, invalid.reason, digest,
                                         command_context(envelope))
        outcome = await self._store.run(self._app.handle, envelope.id, command, payload_sha256=digest,
                                        context=command_context(envelope))
        log.info("command %s %s %s", envelope.id, envelope.type, outcome)
        if outcome == Outcome.ACCEPTED or (outcome == Outcome.DUPLICATE and await self._store.run(
                self._app.was_accepted, envelope.id, digest)):
            # A duplicate may be this very delivery: a save that committed while its
            # connection dropped is retried (here or by eventsourcing) and found stored.
            # Its workflow must still run; starting an accepted command's again is a no-op.
            self._workflow.on_accepted(command, partition)
        return outcome

    async def _give_up(self, envelope: Envelope, digest: str, value: bytes | None,
                       key: bytes | None, failure: str) -> Outcome:
        log.error("command %s (%s) failed %d times: %s; answered %s and dead-lettered",
                  envelope.id, envelope.type, self._attempts, failure, RejectionCode.INTERNAL_ERROR)
        try:
            await self._until_back(envelope.id, "recording its internal_error", lambda: self._store.run(
                self._app.reject_invalid, envelope.id, envelope.type, _cluster_of(envelope),
                RejectionCode.INTERNAL_ERROR, failure, digest, command_context(envelope)))
        except Exception as error:  # noqa: BLE001 - the DLQ still gets the command
            log.error("command %s: its internal_error could not be recorded: %s", envelope.id, describe(error))
        return await self._send_to_dlq(value, key, f"command {envelope.id} failed: {failure}", envelope.id,
                                       "failed")

    async def _send_to_dlq(self, value: bytes | None, key: bytes | None, error: str, label: str,
                           reason: str) -> Outcome:
        self.dead_lettered += 1
        metrics.DEAD_LETTERED.labels(reason).inc()
        log.warning("poison message #%d sent to the DLQ: %s", self.dead_lettered, error)
        headers = [(DLQ_ERROR_HEADER, error.encode("utf-8"))]
        try:
            await self._until_back(label, "sending it to the DLQ",
                                   lambda: self._dead_letter(value or b"", key, headers), _resendable)
        except MessageSizeTooLargeError:
            # Retrying cannot help; the whole record stays on the commands topic.
            log.error("command %s is too large for the DLQ; its first %d bytes sent", label, DLQ_VALUE_LIMIT)
            cut = headers + [("x-snapshot-truncated", str(len(value or b"")).encode())]
            await self._until_back(label, "sending it to the DLQ", lambda: self._dead_letter(
                (value or b"")[:DLQ_VALUE_LIMIT], key, cut), _resendable)
        return Outcome.DEAD_LETTERED

    async def _until_back(self, command_id: str, doing: str, call: Callable[[], Awaitable[T]],
                          away: Callable[[BaseException], bool] = is_infrastructure_error) -> T:
        """`await call()`, again and again while a part it needs is `away` (capped
        backoff, a WARNING each time); any other error is raised."""
        for pause in itertools.count():
            try:
                return await call()
            except Exception as error:  # noqa: BLE001 - sorted just below
                if not away(error):
                    raise
                self.pauses += 1
                delay = self._delay(pause)
                log.warning("command %s paused: %s failed (%s); retrying in %.1f s",
                            command_id, doing, describe(error), delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, retry: int) -> float:
        return min(self._backoff * 2 ** min(retry, 30), self._max_backoff)


#: W3C trace context: version-traceid-parentid-flags, lower-case hex, ids not all zero.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def command_context(envelope: Envelope) -> CommandContext:
    """Who issued the command, as its CloudEvents authcontext says (none: the bus carried
    it without one), and its trace context if valid (an invalid one is ignored, as W3C
    asks, rather than refusing the command)."""
    valid = envelope.traceparent and TRACEPARENT.fullmatch(envelope.traceparent)
    return CommandContext(authtype=envelope.authtype or "unauthenticated", authid=envelope.authid,
                          traceparent=envelope.traceparent if valid else None,
                          tracestate=envelope.tracestate if valid else None)


def command_fields(envelope: Envelope) -> dict:
    """What log lines about a command carry (logs.py); its events are correlated by its id."""
    data = envelope.data
    return {"command_id": envelope.id, "correlation_id": envelope.correlationid or envelope.id,
            "cluster": _short(data.get("cluster_name") or envelope.subject),
            "snapshot": _short(data.get("snapshot_name"))}


def _short(value) -> str | None:
    return None if value is None else str(value)[:256]  # a hostile command's field may be huge
