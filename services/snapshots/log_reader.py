"""A fast reader of the notification log for replay: the stored JSON state is decoded
straight into the published events, without eventsourcing's mapper and domain-event
objects nor pydantic, with the same ids, data, times and command contexts (actor, trace)
that `published.to_envelope` gives them.

It only takes the road it knows is exact: a stored event whose state holds anything it
does not expect (a field missing or of another type, a class version to upcast, a NUL,
a value over a view's limit, an unreadable state, an unknown topic) goes through
`to_envelope` itself, and is marked `checked=False` so the fold runs the projection's own
checks on it. The relay and the live projection never use this module."""

import types
import typing
from dataclasses import MISSING, fields
from datetime import datetime
from enum import Enum
from functools import cache
from hashlib import sha1
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from eventsourcing.utils import resolve_topic

from events.envelope import Envelope
from services.snapshots.domain import INTERNAL_EVENTS
from services.snapshots.projection import _LIMITS
from services.snapshots.published import (_EVENT_ID_NAMESPACE, CommandContexts, Untranslatable,
                                          published_type, to_envelope)

_NAMESPACE_BYTES = _EVENT_ID_NAMESPACE.bytes
_NUL = b"\\u0000"  # JSON's spelling of a NUL (and part of a literal backslash-u0000)
#: Envelope's limits on the extension attributes a command context fills.
_CONTEXT_LIMITS = {"authtype": 64, "authid": 256, "traceparent": 128, "tracestate": 512}
_SLOW = object()


class Published:
    """A published event as the views need it: the attributes of an `Envelope` that the
    projection reads. `checked`: built by the fast road, which already ruled out every
    reason the projection has to set an event aside."""

    __slots__ = ("id", "type", "time", "data", "correlationid", "sequence", "authtype", "authid",
                 "traceparent", "tracestate", "checked", "envelope")

    def __init__(self, id, type, time, data, correlationid, sequence, context, checked=True):
        self.id, self.type, self.time, self.data = id, type, time, data
        self.correlationid, self.sequence, self.checked = correlationid, sequence, checked
        self.envelope: Envelope | None = None  # the slow road's, for the projection's checks
        self.authtype = context.get("authtype")
        self.authid = context.get("authid")
        self.traceparent = context.get("traceparent")
        self.tracestate = context.get("tracestate")

    @classmethod
    def of(cls, envelope: Envelope) -> "Published":
        context = {name: getattr(envelope, name) for name in _CONTEXT_LIMITS}
        event = cls(envelope.id, envelope.type, envelope.time, envelope.data, envelope.correlationid,
                    envelope.sequence, {k: v for k, v in context.items() if v is not None}, checked=False)
        event.envelope = envelope
        return event


def event_id(originator_id, version: int) -> str:
    """`str(uuid5(namespace, f"{id}:{version}"))`, as `to_envelope` derives it, without
    building UUID objects."""
    digest = bytearray(sha1(_NAMESPACE_BYTES + f"{originator_id}:{version}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def json_datetime(stored) -> str:
    """The published (pydantic JSON) spelling of a stored datetime, or _SLOW: ISO 8601 with
    `Z` for UTC, as `datetime.isoformat` writes it otherwise."""
    if type(stored) is not dict or stored.get("_type_") != "datetime_iso" or type(stored.get("_data_")) is not str:
        return _SLOW
    try:
        moment = datetime.fromisoformat(stored["_data_"])
    except ValueError:
        return _SLOW
    offset = moment.utcoffset()
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        return _SLOW  # pydantic's spelling of such an offset is not isoformat's
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_DATETIME = "datetime"


def _accepts(annotation):
    """What the published JSON of one field type may be, read from the stored state:
    (python types, allowed values or None for any), _DATETIME, or None when this reader
    does not know the type (the event then always takes the slow road)."""
    if annotation in (str, int, bool, type(None)):
        return (frozenset({annotation}), None)
    if annotation is datetime:
        return _DATETIME
    if isinstance(annotation, type) and issubclass(annotation, Enum) and issubclass(annotation, str):
        return (frozenset({str}), frozenset(member.value for member in annotation))
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal and all(isinstance(a, str) for a in arguments):
        return (frozenset({str}), frozenset(str(a.value if isinstance(a, Enum) else a) for a in arguments))
    if origin in (typing.Union, types.UnionType):
        options = [_accepts(a) for a in arguments]
        if any(option is None or option is _DATETIME for option in options):
            return None
        kinds = frozenset().union(*(kinds for kinds, _ in options))
        if any(values is None and kinds != frozenset({type(None)}) for kinds, values in options):
            return (kinds, None)  # a plain str or int among them: any value of these types
        values = frozenset().union(*(values or {None} for _, values in options))
        return (kinds, values)
    return None


@cache
def _plan(domain_class: type):
    """How to read one stored event class: ("internal", class name), ("published",
    (name, [(field, default, accepts)], [(limited field, limit)])), or None (always the
    slow road)."""
    if domain_class.__name__ in INTERNAL_EVENTS:
        return ("internal", domain_class.__name__)
    if getattr(domain_class, "class_version", 1) != 1:
        return None
    model = published_type(domain_class)
    if model is None:
        return None
    hints = typing.get_type_hints(model)
    plan = []
    for field in fields(model):
        accepts = _accepts(hints[field.name])
        if accepts is None:
            return None
        plan.append((field.name, field.default, accepts))
    limited = [(name, limit) for name, limit in _LIMITS.items() if name in hints]
    if any(hints[name] is not str for name, _ in limited):
        return None
    return ("published", (model.__name__, plan, limited))


@cache
def _class_of(topic: str):
    try:
        return resolve_topic(topic)
    except Exception:  # noqa: BLE001 - the slow road says what is wrong with it
        return None


#: One stored event as the fast reader takes it: (notification id, originator id as text,
#: originator version, topic, state).
Row = tuple[int, str, int, str, bytes]


def read_rows(recorder, start: int, limit: int) -> list[Row]:
    """The notification log from `start`, as plain tuples: the query of the recorder's
    `select_notifications`, without building UUIDs and Notification objects per row."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        # A UUID is stored as its 32 hex digits: spelt here as str(UUID) spells it.
        originator = ("substr(originator_id, 1, 8) || '-' || substr(originator_id, 9, 4) || '-' || "
                      "substr(originator_id, 13, 4) || '-' || substr(originator_id, 17, 4) || '-' || "
                      "substr(originator_id, 21)") if recorder.datastore.originator_id_type == "uuid" \
            else "originator_id"
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT rowid, {originator}, originator_version, topic, state FROM "
                           f"{recorder.events_table_name} WHERE rowid>=? ORDER BY rowid LIMIT ?",
                           (start, limit))
            return cursor.fetchall()  # sqlite3.Row: a sequence, like the tuples
    if isinstance(recorder, PostgresApplicationRecorder):
        query = SQL("SELECT notification_id, originator_id::text, originator_version, topic, state "
                    "FROM {}.{} WHERE notification_id>=%s ORDER BY notification_id LIMIT %s").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as connection:
            with connection.cursor(row_factory=tuple_row) as cursor:
                cursor.execute(query, (start, limit), prepare=True)
                return cursor.fetchall()
    return [(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(start, limit)]


class LogReader:
    """Published events of stored notifications, with their commands' contexts."""

    def __init__(self, mapper: Mapper, source: str, contexts: CommandContexts):
        self._mapper = mapper
        self._source = source
        self._contexts = contexts
        #: Per topic: how to read it (see `_plan`); None: the slow road.
        self._plans: dict[str, tuple | None] = {}
        #: Command contexts found fit for the envelope (no NUL, within its limits), by command.
        self._plain_contexts: dict[str | None, dict] = {}
        #: A cipher or compressor, or a source the projection would refuse: all slow.
        self._fast_road = (not mapper.cipher and not mapper.compressor and "\x00" not in source
                           and "\\u0000" not in source and len(source) <= 256)

    def read(self, batch: list[Row]) -> list[Published]:
        out = []
        fast = self._fast if self._fast_road else None
        for row in batch:
            event = fast(*row) if fast else _SLOW
            if event is _SLOW:
                event = self._slow(row)
            if event is not None:
                out.append(event)
        return out

    def _slow(self, row: Row) -> Published | None:
        position, originator_id, version, topic, state = row
        try:
            originator_id = UUID(originator_id)
        except ValueError:
            pass  # a store of text ids
        notification = Notification(id=position, originator_id=originator_id,
                                    originator_version=version, topic=topic, state=bytes(state))
        try:
            envelope = to_envelope(self._mapper, notification, self._source, self._contexts)
        except Untranslatable:
            return None  # the relay sets these aside; the views never see them
        return Published.of(envelope) if envelope is not None else None

    def _fast(self, position: int, originator_id: str, version: int, topic: str, raw: bytes):
        plan = self._plans.get(topic, _SLOW)
        if plan is _SLOW:
            cls = _class_of(topic)
            plan = self._plans[topic] = _plan(cls) if cls is not None else None
        if plan is None or _NUL in raw:
            return _SLOW
        try:
            state = orjson.loads(raw)  # refuses what stdlib json would read loosely: slow road
        except orjson.JSONDecodeError:
            return _SLOW
        if type(state) is not dict or "class_version" in state:
            return _SLOW
        kind, how = plan
        if kind == "internal":
            if how == "CommandReceived":
                if type(state.get("command_id")) is not str:
                    return _SLOW
                self._contexts.remember(types.SimpleNamespace(**state))
            return None
        name, field_plan, limited = how
        data = {}
        for field, default, accepts in field_plan:
            value = state.get(field, MISSING)
            if value is MISSING:
                if default is MISSING:
                    return _SLOW
                value = default
            if accepts is _DATETIME:
                value = json_datetime(value)
                if value is _SLOW:
                    return _SLOW
            elif type(value) not in accepts[0] or (accepts[1] is not None and value not in accepts[1]):
                return _SLOW
            data[field] = value
        for field, limit in limited:
            if len(data[field]) > limit:
                return _SLOW
        command_id = state.get("command_id")
        if command_id is not None and (type(command_id) is not str or len(command_id) > 256):
            return _SLOW
        timestamp = state.get("timestamp")  # eventsourcing's own transcoding of a datetime
        if type(timestamp) is not dict or timestamp.get("_type_") != "datetime_iso":
            return _SLOW
        try:
            time = datetime.fromisoformat(timestamp["_data_"])
        except (TypeError, ValueError):
            return _SLOW
        context = self._contexts.of(command_id)
        if self._plain_contexts.get(command_id) is not context:  # checked once per command
            for attribute, value in context.items():
                if len(value) > _CONTEXT_LIMITS[attribute] or "\x00" in value or "\\u0000" in value:
                    return _SLOW
            if len(self._plain_contexts) >= 100_000:
                self._plain_contexts.clear()
            self._plain_contexts[command_id] = context
        return Published(event_id(originator_id, version), name, time, data, command_id, str(position),
                         context)
