"""`schemas/` is generated from the models in `events/`; any drift fails here."""

import json
from pathlib import Path

import jsonschema

from events.codec import command_envelope, encode
from events.commands import COMMAND_TYPES, CreateSnapshotRequested
from events.events import EVENT_TYPES
from events.schema_generator import SCHEMAS_DIR, generated_files


def test_committed_schemas_match_the_models():
    expected = generated_files()
    committed = {path.name: path.read_text() for path in Path(SCHEMAS_DIR).glob("*.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, f"run `make schemas`: stale {stale}, unexpected {extra}"


def test_there_is_one_schema_per_message_type():
    names = {path.stem for path in Path(SCHEMAS_DIR).glob("*.json")} - {"asyncapi"}
    assert names == set(COMMAND_TYPES) | set(EVENT_TYPES)


def test_an_encoded_command_validates_against_its_schema():
    envelope = command_envelope(CreateSnapshotRequested(cluster_name="dws-1", snapshot_name="n-01"))
    schema = json.loads((Path(SCHEMAS_DIR) / "CreateSnapshotRequested.json").read_text())
    jsonschema.validate(json.loads(encode(envelope)), schema)


def test_the_asyncapi_document_names_the_three_topics():
    document = json.loads((Path(SCHEMAS_DIR) / "asyncapi.json").read_text())
    assert document["asyncapi"].startswith("3.")
    assert {c["address"] for c in document["channels"].values()} == {
        "snapshot.commands", "snapshot.events", "snapshot.commands.dlq"}
