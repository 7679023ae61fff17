"""Translation of stored domain events into published CloudEvents.

A domain event is published as the class of `events.events` that it inherits (its fields
defined once, there); events on the domain's `INTERNAL_EVENTS` list stay inside. The
envelope id is derived from the aggregate id and version, so re-publishing history sends
the same ids; `sequence` is the notification id; `correlationid` the causing command."""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields
from functools import cache
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.persistence import Mapper, Notification

from events.codec import event_data
from events.envelope import Envelope
from events.events import EVENT_TYPES, Event
from services.snapshots.domain import INTERNAL_EVENTS

_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dws-snapshots:event-ids")
_PUBLISHED_CLASSES = frozenset(EVENT_TYPES.values())


class Untranslatable(Exception):
    """A stored event that cannot be published: unknown, unreadable or not fitting its
    published type. The relay sets it aside instead of stalling on it."""

    def __init__(self, notification: Notification, reason: str):
        super().__init__(f"event {notification.id} ({notification.topic}): {reason}")
        self.position = notification.id
        self.topic = notification.topic
        self.reason = reason


@cache
def published_type(domain_event_class: type) -> type[Event] | None:
    """The published class a domain event class inherits, if any."""
    return next((cls for cls in domain_event_class.__mro__ if cls in _PUBLISHED_CLASSES), None)


class CommandContexts:
    """Who issued each command, and its trace context, as its `CommandRecord` keeps them:
    every event a command causes is published with them. A reader of the log meets a
    command's `CommandReceived` just before its effects (they are saved together), so the
    contexts are remembered as they stream by; an event whose command came before the
    reader's start (a workflow step an hour later, after a restart) is looked up."""

    UNAUTHENTICATED = {"authtype": "unauthenticated"}

    def __init__(self, lookup: Callable[[str], dict | None], size: int = 100_000):
        self._lookup = lookup
        self._size = size
        self._known: OrderedDict[str, dict] = OrderedDict()

    def remember(self, received) -> None:
        self._known[received.command_id] = context_of(received)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def of(self, command_id: str | None) -> dict:
        if command_id is None:
            return {}
        if command_id not in self._known:
            self._known[command_id] = self._lookup(command_id) or self.UNAUTHENTICATED
        return self._known[command_id]


def context_of(received) -> dict:
    """The published attributes of a command's context (an unauthenticated command: the
    bus carried no authcontext)."""
    context = {name: getattr(received, name, None) for name in CONTEXT_ATTRIBUTES}
    context["authtype"] = context["authtype"] or "unauthenticated"
    return {name: value for name, value in context.items() if value is not None}


CONTEXT_ATTRIBUTES = ("authtype", "authid", "traceparent", "tracestate")


def to_envelope(mapper: Mapper, notification: Notification, source: str,
                contexts: CommandContexts | None = None) -> Envelope | None:
    """The published form of a stored event; None for an internal event."""
    try:
        domain_event = mapper.to_domain_event(notification)
    except Exception as error:  # noqa: BLE001 - any unreadable event is set aside, not fatal
        raise Untranslatable(notification, f"unreadable: {type(error).__name__}: {error}") from None
    name = type(domain_event).__name__
    if name in INTERNAL_EVENTS:
        if contexts is not None and name == "CommandReceived":
            contexts.remember(domain_event)
        return None
    model = published_type(type(domain_event))
    if model is None:
        raise Untranslatable(notification, f"{name} has no published type and is not internal")
    try:
        data = event_data(model, {f.name: getattr(domain_event, f.name) for f in fields(model)
                                  if hasattr(domain_event, f.name)})
    except Exception as error:  # noqa: BLE001 - pydantic's ValidationError, a missing field
        raise Untranslatable(notification, f"does not fit {model.__name__}: {error}") from None
    command_id = getattr(domain_event, "command_id", None)
    return Envelope(
        id=str(uuid5(_EVENT_ID_NAMESPACE, f"{notification.originator_id}:{notification.originator_version}")),
        type=model.__name__, source=source, time=domain_event.timestamp,
        subject=data["cluster_name"], data=data, correlationid=command_id, sequence=str(notification.id),
        **(contexts.of(command_id) if contexts is not None else {}))
