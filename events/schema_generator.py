"""Generates `schemas/` from the models: one JSON Schema per message type (the whole
CloudEvent, with its `data`) and an AsyncAPI 3 document of the three topics.

Run `make schemas` after changing a model; `tests/unit/test_schemas.py` fails on drift."""

import json
from pathlib import Path
from typing import Literal

from pydantic import create_model

from events import kafka
from events.commands import COMMAND_TYPES
from events.envelope import Envelope
from events.events import EVENT_TYPES

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


def message_schema(name: str, data_model) -> dict:
    message = create_model(name, __base__=Envelope, type=(Literal[name], ...),
                           data=(data_model, ...))
    schema = message.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://dws-snapshots/schemas/{name}.json"
    return schema


def all_schemas() -> dict[str, dict]:
    models = {**COMMAND_TYPES, **EVENT_TYPES}
    return {f"{name}.json": message_schema(name, model) for name, model in sorted(models.items())}


def asyncapi() -> dict:
    def refs(names):
        return {name: {"$ref": f"#/components/messages/{name}"} for name in sorted(names)}

    messages = {name: {"name": name, "contentType": kafka.CONTENT_TYPE,
                       "payload": {"$ref": f"./{name}.json"}}
                for name in sorted({**COMMAND_TYPES, **EVENT_TYPES})}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "dws-snapshots", "version": "1",
                 "description": "Snapshot control plane: commands in, status events out "
                                "(SPEC.md). The Kafka key of every message is the cluster name."},
        "channels": {
            "commands": {"address": kafka.COMMANDS, "messages": refs(COMMAND_TYPES)},
            "events": {"address": kafka.EVENTS, "messages": refs(EVENT_TYPES)},
            "dlq": {"address": kafka.COMMANDS_DLQ,
                    "description": f"Undecodable commands as received; header {kafka.DLQ_ERROR_HEADER} holds the error.",
                    "messages": {}},
        },
        "operations": {
            "receiveCommands": {"action": "receive", "channel": {"$ref": "#/channels/commands"}},
            "sendEvents": {"action": "send", "channel": {"$ref": "#/channels/events"}},
            "sendDeadLetters": {"action": "send", "channel": {"$ref": "#/channels/dlq"}},
        },
        "components": {"messages": messages},
    }


def generated_files() -> dict[str, str]:
    files = {name: json.dumps(schema, indent=2, sort_keys=True) + "\n"
             for name, schema in all_schemas().items()}
    files["asyncapi.json"] = json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n"
    return files


def main() -> None:
    SCHEMAS_DIR.mkdir(exist_ok=True)
    for stale in SCHEMAS_DIR.glob("*.json"):
        stale.unlink()
    for name, text in generated_files().items():
        (SCHEMAS_DIR / name).write_text(text)
    print(f"wrote {len(generated_files())} files to {SCHEMAS_DIR}")


if __name__ == "__main__":
    main()
