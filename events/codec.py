"""The one codec used by every producer and consumer of dws-snapshots messages.

`decode` raises `Undecodable` for bytes that are not a CloudEvent (those go to the DLQ);
`parse_command` raises `CommandInvalid` with a SPEC rejection code for a decodable
envelope whose type or data is wrong (those are answered with `CommandRejected`)."""

from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from events.commands import COMMAND_TYPES, Command
from events.envelope import Envelope
from events.events import EVENT_TYPES, Event

MAX_MESSAGE_BYTES = 1_000_000


class Undecodable(ValueError):
    """The bytes are not a CloudEvents JSON envelope."""


class CommandInvalid(ValueError):
    """A decodable envelope that is not a valid command."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode("utf-8")


def decode(raw: bytes | None) -> Envelope:
    if raw is None:
        raise Undecodable("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Undecodable(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as error:
        raise Undecodable(_first_error(error)) from None


def parse_command(envelope: Envelope) -> Command:
    model = COMMAND_TYPES.get(envelope.type)
    if model is None:
        raise CommandInvalid("unknown_command_type", f"unknown command type {envelope.type!r}")
    try:
        return model.model_validate(envelope.data)
    except ValidationError as error:
        raise CommandInvalid("invalid_command", _first_error(error)) from None


def parse_event(envelope: Envelope) -> Event:
    """The typed `data` of a status event; raises `KeyError` for a type this version does
    not know and pydantic's `ValidationError` for data that does not fit."""
    return event_adapter(EVENT_TYPES[envelope.type]).validate_python(envelope.data)


def event_data(event_type: type[Event], fields: dict[str, Any]) -> dict[str, Any]:
    """The published `data` of an event: validated against its type, as JSON values.
    Raises `ValidationError` when a field is missing or does not fit."""
    adapter = event_adapter(event_type)
    return adapter.dump_python(adapter.validate_python(fields), mode="json")


@cache
def event_adapter(event_type: type[Event]) -> TypeAdapter:
    return TypeAdapter(event_type)


def command_envelope(command: Command, source: str = "snapshotctl", **fields) -> Envelope:
    """Wrap a command for publishing; `fields` may fix the `id` (the idempotency key)."""
    data = command.model_dump(mode="json")
    return Envelope(type=type(command).__name__, source=source,
                    subject=command.cluster_name, data=data, **fields)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "message"
    return f"{where}: {first.get('msg', 'invalid')}"[:500]
