"""Translation of stored domain events into published CloudEvents.

Only events named in `events.events` leave the service, with only their published fields.
The envelope id is derived from the aggregate id and version, so re-publishing history
sends the same ids; `sequence` is the notification id."""

from collections.abc import Iterable, Iterator
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.persistence import Notification

from events.envelope import Envelope
from events.events import EVENT_TYPES
from services.snapshots.application import SnapshotsApplication

_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dws-snapshots:event-ids")


def to_envelopes(app: SnapshotsApplication, notifications: Iterable[Notification],
                 source: str) -> Iterator[Envelope]:
    for notification in notifications:
        envelope = to_envelope(app, notification, source)
        if envelope is not None:
            yield envelope


def to_envelope(app: SnapshotsApplication, notification: Notification,
                source: str) -> Envelope | None:
    domain_event = app.mapper.to_domain_event(notification)
    name = type(domain_event).__name__
    model = EVENT_TYPES.get(name)
    if model is None:
        return None  # internal bookkeeping such as CommandReceived
    data = model.model_validate(vars(domain_event)).model_dump(mode="json")
    return Envelope(
        id=str(uuid5(_EVENT_ID_NAMESPACE, f"{notification.originator_id}:{notification.originator_version}")),
        type=name, source=source, time=domain_event.timestamp, subject=data["cluster_name"],
        data=data, correlationid=getattr(domain_event, "command_id", None),
        sequence=str(notification.id))
