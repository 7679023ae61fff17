"""The codec: undecodable bytes go to the DLQ, bad commands get a specific code."""

import json

import pytest

from events.codec import CommandInvalid, Undecodable, command_envelope, decode, encode, parse_command
from events.commands import CreateSnapshotRequested


def raw(type_="CreateSnapshotRequested", **data) -> bytes:
    return json.dumps({"specversion": "1.0", "id": "cmd-1", "type": type_, "source": "test",
                       "data": data}).encode()


def test_a_command_survives_a_round_trip_through_the_codec():
    command = CreateSnapshotRequested(cluster_name="dws-1", snapshot_name="nightly-01", description="d")
    envelope = decode(encode(command_envelope(command, id="fixed-id")))
    assert (envelope.id, envelope.subject, parse_command(envelope)) == ("fixed-id", "dws-1", command)


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[1,2]", b'{"type": "X"}x',
                                   b'{"specversion": "0.3", "id": "1", "type": "X", "source": "s"}',
                                   b"\xff\xfe", b"{" * 10_000])
def test_bytes_that_are_not_a_cloudevent_are_undecodable(value):
    with pytest.raises(Undecodable):
        decode(value)


def test_an_unknown_command_type_is_rejected_as_such():
    with pytest.raises(CommandInvalid) as refusal:
        parse_command(decode(raw("FormatDisk", cluster_name="dws-1")))
    assert refusal.value.code == "unknown_command_type"


@pytest.mark.parametrize("data", [
    {},
    {"cluster_name": "dws-1"},
    {"cluster_name": 7, "snapshot_name": "nightly-01"},
    {"cluster_name": "dws-1", "snapshot_name": ["a"]},
    {"cluster_name": "dws-1", "snapshot_name": "n" * 10_000},
    {"cluster_name": "dws-1", "snapshot_name": "nightly-01", "extra": 1},
])
def test_data_that_fails_validation_is_an_invalid_command(data):
    with pytest.raises(CommandInvalid) as refusal:
        parse_command(decode(raw(**data)))
    assert refusal.value.code == "invalid_command"
