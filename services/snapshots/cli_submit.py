"""How `snapshotctl`'s write verbs send their command and follow it: through the API (the
default: `GET /commands/{id}` until the outcome, the snapshot's `progress` polled beside it)
or on the bus (`--via kafka`: the events themselves, progress included)."""

import asyncio
import uuid
from urllib.parse import quote

import typer

from events.commands import CreateSnapshotRequested
from events.vocabulary import name_key
from services.snapshots.api_client import ApiClient, ApiError
from services.snapshots.cli_output import ProgressDisplay, api_event_line, event_line, fail, print_json, printable
from services.snapshots.client import EventFollower, failure_of, follow_command, publish_command
from services.snapshots.settings import Settings


def submit(command, request, wait: bool, timeout: float, via: str, command_id: str | None,
            expect_cluster: str | None = None, as_json: bool = False) -> None:
    if via == "kafka":
        return _send(command, wait, timeout, command_id, as_json)
    if via != "http":
        fail(f"--via must be http or kafka, not {via!r}", 2)
    client, outcome = ApiClient(Settings()), None
    try:
        if expect_cluster is not None:
            _check_cluster_of(client, command.snapshot_name, expect_cluster)
        method, path, body = request
        headers = {"Idempotency-Key": command_id} if command_id else {}
        sent = client.call(method, path, json=body, headers=headers)
        if not as_json:
            typer.echo(f"sent {type(command).__name__} {sent['command_id']}")
        if wait:
            outcome = _follow(client, command, sent["command_id"], timeout, as_json)
        if as_json:
            print_json(client.call("GET", f"/commands/{sent['command_id']}") if wait else sent)
    except ApiError as error:
        fail(str(error))
    if outcome:
        fail(outcome)


def _follow(client: ApiClient, command, command_id: str, timeout: float, as_json: bool) -> str | None:
    """Follow the command to its outcome; a snapshot's progress while it copies."""
    creating = isinstance(command, CreateSnapshotRequested)
    path = f"/snapshots/{quote(getattr(command, 'snapshot_name', ''), safe='')}"
    with ProgressDisplay(getattr(command, "snapshot_name", "")) as display:
        def show(event: dict) -> None:
            if event["type"] == "SnapshotCompleted":
                display.complete(event["data"]["size_bytes"])
            if not as_json:
                display.echo(api_event_line(event))
            if event["data"].get("warning"):
                typer.echo(f"warning: {printable(event['data']['warning'])}", err=True)

        def poll_progress() -> None:  # telemetry: not among the command's events
            try:
                display.update(client.call("GET", path).get("progress"))
            except ApiError:
                pass  # not projected yet; the next poll tries again

        outcome = client.follow(command_id, type(command).__name__, timeout, show,
                                poll_progress if creating and not as_json else None)
    if creating and outcome is None:
        return _cancelled(client.call("GET", path))
    return outcome


def _cancelled(snapshot: dict) -> str | None:
    """A snapshot cancelled while `create --wait` followed it ends the create unsuccessfully."""
    if snapshot.get("status") == "Cancelled":
        return f"snapshot {snapshot['name']} was cancelled: {snapshot.get('failure_reason') or ''}".rstrip(": ")
    return None


def _check_cluster_of(client: ApiClient, snapshot_name: str, cluster: str) -> None:
    try:
        snapshot = client.call("GET", f"/snapshots/{quote(snapshot_name, safe='')}")
    except ApiError as error:
        if error.status != 404:
            raise
        snapshot = {"cluster_name": None}
    if name_key(snapshot["cluster_name"] or "") != name_key(cluster):
        raise ApiError(f"rejected (unknown_snapshot): cluster {cluster!r} has no snapshot {snapshot_name!r}")


def _send(command, wait: bool, timeout: float, command_id: str | None = None, as_json: bool = False) -> None:
    settings = Settings()
    command_id = command_id or str(uuid.uuid4())
    try:
        outcome = asyncio.run(_publish_and_follow(settings, command, command_id, wait, timeout, as_json))
    except (OSError, asyncio.TimeoutError) as error:
        fail(f"no answer from Kafka at {settings.kafka_bootstrap_servers}: {error or 'timed out'}")
    if outcome:
        fail(outcome)


async def _publish_and_follow(settings, command, command_id, wait, timeout, as_json=False) -> str | None:
    sent = f"sent {type(command).__name__} {command_id}"
    if not wait:
        await publish_command(settings.kafka_bootstrap_servers, settings.commands_topic, command, command_id)
        typer.echo(f'{{"command_id": "{command_id}"}}' if as_json else sent)
        return None
    async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic) as follower:
        await publish_command(settings.kafka_bootstrap_servers, settings.commands_topic, command, command_id)
        if not as_json:
            typer.echo(sent)
        with ProgressDisplay(getattr(command, "snapshot_name", "")) as display:
            return await asyncio.wait_for(_progress(follower, command_id, type(command).__name__, display,
                                                    as_json), timeout)


async def _progress(follower, command_id, command_type, display: ProgressDisplay, as_json: bool) -> str | None:
    failure, settled = None, False
    async for envelope in follow_command(follower, command_id, command_type):
        settled = settled or envelope.type in ("SnapshotCompleted", "SnapshotFailed")
        ends_task = envelope.type == "ClusterUnlocked" and not envelope.data.get("task_status")  # not online
        if ends_task and command_type == "CreateSnapshotRequested" and not settled:
            failure = f"snapshot {envelope.data['snapshot_name']} was cancelled"
        if as_json:  # one CloudEvent a line, as `watch --json`
            typer.echo(envelope.model_dump_json(exclude_none=True))
        elif envelope.type == "SnapshotProgress":
            display.update(envelope.data)
            continue
        else:
            display.echo(describe_event(envelope))
        if envelope.type == "CommandRejected":
            return f"rejected ({envelope.data['code']}): {envelope.data['reason']}"
        failure = failure_of(envelope.type, envelope.data) or failure  # the last event it follows
        if envelope.data.get("warning"):
            typer.echo(f"warning: {printable(envelope.data['warning'])}", err=True)
    return failure


def describe_event(envelope) -> str:
    return event_line(envelope.time, envelope.type, envelope.data)
