"""One definition per command handler and per event: what the codec accepts is handled,
and what the domain stores is published with exactly its published fields, or is on the
one list of internal events."""

import subprocess
import sys
from dataclasses import fields

from eventsourcing.domain import DomainEvent

from events.commands import COMMAND_TYPES
from events.events import EVENT_TYPES, TELEMETRY_EVENTS
from services.snapshots.domain import AGGREGATES, INTERNAL_EVENTS
from services.snapshots.handlers import COMMAND_HANDLERS
from services.snapshots.published import published_type


def stored_event_classes() -> list[type]:
    return [value for aggregate in AGGREGATES for value in vars(aggregate).values()
            if isinstance(value, type) and issubclass(value, DomainEvent)]


def test_every_command_the_codec_accepts_has_a_handler():
    assert set(COMMAND_HANDLERS) == set(COMMAND_TYPES.values())


def test_a_command_type_without_a_handler_fails_at_import_not_in_the_dlq():
    script = ("from events import commands\n"
              "class ResizeClusterRequested(commands.Command): pass\n"
              "commands.COMMAND_TYPES['ResizeClusterRequested'] = ResizeClusterRequested\n"
              "import services.snapshots.handlers\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    assert "commands without a handler: ResizeClusterRequested" in done.stderr


def test_every_stored_event_is_published_as_its_namesake_or_is_internal():
    unmapped = [cls.__qualname__ for cls in stored_event_classes()
                if cls.__name__ not in INTERNAL_EVENTS
                and published_type(cls) is not EVENT_TYPES.get(cls.__name__)]
    assert unmapped == []


def test_internal_events_are_never_published():
    internal = [cls for cls in stored_event_classes() if cls.__name__ in INTERNAL_EVENTS]
    assert sorted(cls.__name__ for cls in internal) == ["CommandReceived", "SnapshotCancelRequested", "SnapshotTaskEnded"]
    assert all(published_type(cls) is None for cls in internal)


def test_every_published_event_is_recorded_by_the_domain():
    recorded = {cls.__name__ for cls in stored_event_classes()}
    assert set(EVENT_TYPES) - TELEMETRY_EVENTS <= recorded
    assert not TELEMETRY_EVENTS & recorded  # telemetry is never stored


def test_a_stored_event_carries_every_published_field_and_the_causing_command():
    for cls in stored_event_classes():
        model = published_type(cls)
        if model is None:
            continue
        stored = {f.name for f in fields(cls)}
        assert {f.name for f in fields(model)} | {"command_id"} <= stored, cls.__qualname__
