"""Default topic names (SPEC.md, "Topics"); each can be overridden by a setting."""

COMMANDS = "snapshot.commands"
EVENTS = "snapshot.events"
COMMANDS_DLQ = "snapshot.commands.dlq"

#: Header on a DLQ record that carries the decoding error.
DLQ_ERROR_HEADER = "x-snapshot-error"
CONTENT_TYPE = "application/cloudevents+json"
