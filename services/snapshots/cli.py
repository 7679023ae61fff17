"""`snapshotctl`: the command line of dws-snapshots (SPEC.md, "Command line").

Commands only translate arguments into commands or queries; exit 0 when done, non-zero
with a one-line reason on stderr when rejected or failed."""

import asyncio
import json
import sys
import uuid
from datetime import datetime
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from events.commands import (CopySnapshotRequested, CreateSnapshotRequested, DeleteSnapshotRequested,
                             RegisterCluster, RestoreSnapshotRequested)
from events.kafka import KafkaSettingsError
from events.vocabulary import DriverName, name_key
from services.snapshots import bootstrap, replay as replay_jobs, supervisor
from services.snapshots.api_client import ApiClient, ApiError
from services.snapshots.client import EventFollower, follow_command, publish_command
from services.snapshots.settings import Settings

# Tracebacks never show local variables: one of them may hold os.environ or a password.
cli = typer.Typer(help="dws-snapshots: the snapshot control plane for warehouse clusters.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
# Piped output is not cut to 80 columns: names and reasons stay whole for grep and scripts.
console = Console(width=None if sys.stdout.isatty() else 250)


def fail(reason: str, code: int = 1) -> None:
    typer.echo(f"snapshotctl: {reason}", err=True)
    raise typer.Exit(code)


@cli.command()
def up() -> None:
    """Run everything on this machine: broker (if none answers), service, projection, API."""
    try:
        sys.exit(supervisor.up(Settings()))
    except supervisor.AlreadyRunning as refused:
        fail(str(refused))


@cli.command()
def service() -> None:
    """Run the service worker: commands in, workflows, relay to the events topic."""
    from services.snapshots.worker import run

    settings = Settings()
    bootstrap.prepare_process(settings, "service")
    run(bootstrap.service_worker(settings), settings)


@cli.command()
def projection() -> None:
    """Run the projection worker: status events into the snapshot and cluster views."""
    from services.snapshots.worker import run

    settings = Settings()
    bootstrap.prepare_process(settings, "projection")
    run(bootstrap.projection_worker(settings), settings)


@cli.command()
def api() -> None:
    """Serve the HTTP query API on SNAPSHOT_HTTP_PORT."""
    import uvicorn

    settings = Settings()
    bootstrap.prepare_process(settings, "api")
    # The console's event streams never end by themselves: on SIGTERM they get 2 s.
    uvicorn.run(bootstrap.build_api(settings), host=settings.http_host, port=settings.http_port,
                log_level="warning", log_config=None, timeout_graceful_shutdown=2)  # logs: logs.py


VIA = typer.Option("http", "--via", help="http (the API, with your token; the default) or kafka "
                                          "(publish on the bus directly: needs broker credentials)")
COMMAND_ID = typer.Option(None, "--command-id", help="the command's id (idempotency key)")


@cli.command()
def create(cluster: str, name: str, description: str = typer.Option("", "--description", "-d"),
           wait: bool = typer.Option(False, "--wait", help="show progress until the outcome"),
           timeout: float = typer.Option(600.0, help="seconds to wait with --wait"),
           retention_days: int = typer.Option(-1, "--retention-days", help="-1 (keep forever) or 1-3653"),
           online: bool = typer.Option(False, "--online", help="postgres: read-only only until the dump's snapshot is taken"),
           via: str = VIA, command_id: str = COMMAND_ID) -> None:
    """Request a snapshot NAME of CLUSTER."""
    command = CreateSnapshotRequested(cluster_name=cluster, snapshot_name=name, description=description,
                                      retention_days=retention_days, online=online)
    _submit(command, ("POST", "/snapshots", command.model_dump()), wait, timeout, via, command_id)


@cli.command()
def delete(cluster: str, name: str, wait: bool = typer.Option(False, "--wait"),
           timeout: float = typer.Option(120.0), via: str = VIA, command_id: str = COMMAND_ID) -> None:
    """Delete snapshot NAME of CLUSTER (Available or Failed) and its files."""
    command = DeleteSnapshotRequested(cluster_name=cluster, snapshot_name=name)
    _submit(command, ("DELETE", f"/snapshots/{quote(name, safe='')}", None), wait, timeout, via,
            command_id, expect_cluster=cluster)


@cli.command()
def restore(cluster: str, name: str, target_cluster: str,
            wait: bool = typer.Option(False, "--wait"), timeout: float = typer.Option(3600.0),
            via: str = VIA, command_id: str = COMMAND_ID) -> None:
    """Restore snapshot NAME of CLUSTER into a new cluster TARGET_CLUSTER."""
    command = RestoreSnapshotRequested(cluster_name=cluster, snapshot_name=name,
                                       target_cluster_name=target_cluster)
    _submit(command, ("POST", f"/snapshots/{quote(name, safe='')}/restore",
                      {"target_cluster_name": target_cluster}), wait, timeout, via, command_id,
            expect_cluster=cluster)


@cli.command()
def copy(cluster: str, name: str, to: str = typer.Option(..., "--to", help="a repository URL in SNAPSHOT_COPY_TARGETS"),
         wait: bool = typer.Option(False, "--wait"), timeout: float = typer.Option(3600.0),
         via: str = VIA, command_id: str = COMMAND_ID) -> None:
    """Copy snapshot NAME of CLUSTER to another repository (s3://bucket/prefix), verified there."""
    command = CopySnapshotRequested(cluster_name=cluster, snapshot_name=name, target_repository=to)
    _submit(command, ("POST", f"/snapshots/{quote(name, safe='')}/copy", {"target_repository": to}),
            wait, timeout, via, command_id, expect_cluster=cluster)


@cli.command("register-cluster")
def register_cluster(name: str, target: str = typer.Option(..., help="file path or password-free URL"),
                     driver: str = typer.Option("sqlite", help="sqlite or postgres"),
                     wait: bool = typer.Option(True, help="wait for the outcome"),
                     timeout: float = 60.0, via: str = VIA, command_id: str = COMMAND_ID) -> None:
    """Register a cluster the service can snapshot (an admin token)."""
    if driver not in set(DriverName):
        fail(f"unknown driver {driver!r}: use " + " or ".join(DriverName), 2)
    command = RegisterCluster(cluster_name=name, driver=driver, target=target)
    _submit(command, ("POST", "/clusters", command.model_dump(mode="json")), wait, timeout, via, command_id)


@cli.command("list")
def list_snapshots(cluster: str = typer.Option(None), status: str = typer.Option(None),
                   limit: int = 100, offset: int = 0,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the snapshot list, newest first."""
    params = {k: v for k, v in dict(cluster=cluster, status=status, limit=limit, offset=offset).items()
              if v is not None}
    body = _get("/snapshots", params)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table("Name", "Cluster", "Status", "Type", "Size (bytes)", "Started", "Finished", "Note")
    for s in body["snapshots"]:
        table.add_row(*map(_printable, (s["name"], s["cluster_name"], s["status"], s["snapshot_type"],
                      "" if s["size_bytes"] is None else f"{s['size_bytes']:,}",
                      s["started_at"] or "", s["finished_at"] or "",
                      s["failure_reason"] or s["warning"] or "")))
    console.print(table)
    console.print(f"{body['count']} snapshot(s)")


@cli.command()
def clusters(status: str = typer.Option(None), as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the clusters and their status."""
    body = _get("/clusters", {"status": status} if status else {})
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table("Name", "Status", "Task status", "Driver", "Target")
    for c in body["clusters"]:
        table.add_row(*map(_printable, (c["name"], c["status"], c["task_status"] or "", c["driver"], c["target"])))
    console.print(table)


@cli.command()
def watch(from_beginning: bool = typer.Option(False, "--from-beginning")) -> None:
    """Follow status events live (Ctrl-C to stop)."""
    settings = Settings()

    async def follow() -> None:
        async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic,
                                 from_beginning) as follower:
            async for envelope in follower.events():
                typer.echo(_describe(envelope))

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:
        pass


@cli.command()
def replay(republish: bool = typer.Option(False, help="also re-send history to the events topic")) -> None:
    """Rebuild the read model from the event store (optionally re-publish history)."""
    settings = Settings()
    parts = bootstrap.build_replay(settings)
    applied = replay_jobs.rebuild_views(parts, settings.service_id)
    typer.echo(f"rebuilt the views from {applied} stored events")
    if republish:
        sent = asyncio.run(replay_jobs.republish(parts, settings.kafka_bootstrap_servers,
                                                 settings.events_topic, settings.service_id))
        typer.echo(f"re-published {sent} events to {settings.events_topic}")


def _submit(command, request, wait: bool, timeout: float, via: str, command_id: str | None,
            expect_cluster: str | None = None) -> None:
    if via == "kafka":
        return _send(command, wait, timeout, command_id)
    if via != "http":
        fail(f"--via must be http or kafka, not {via!r}", 2)
    client = ApiClient(Settings())
    try:
        if expect_cluster is not None:
            _check_cluster_of(client, command.snapshot_name, expect_cluster)
        method, path, body = request
        headers = {"Idempotency-Key": command_id} if command_id else {}
        sent = client.call(method, path, json=body, headers=headers)
        typer.echo(f"sent {type(command).__name__} {sent['command_id']}")
        outcome = wait and client.follow(sent["command_id"], type(command).__name__, timeout, _show)
    except ApiError as error:
        fail(str(error))
    if outcome:
        fail(outcome)


def _check_cluster_of(client: ApiClient, snapshot_name: str, cluster: str) -> None:
    try:
        snapshot = client.call("GET", f"/snapshots/{quote(snapshot_name, safe='')}")
    except ApiError as error:
        if error.status != 404:
            raise
        snapshot = {"cluster_name": None}
    if name_key(snapshot["cluster_name"] or "") != name_key(cluster):
        raise ApiError(f"rejected (unknown_snapshot): cluster {cluster!r} has no snapshot {snapshot_name!r}")


def _show(event: dict) -> None:
    typer.echo(_line(datetime.fromisoformat(event["time"]), event["type"], event["data"]))
    if event["data"].get("warning"):
        typer.echo(f"warning: {_printable(event['data']['warning'])}", err=True)


def _send(command, wait: bool, timeout: float, command_id: str | None = None) -> None:
    settings = Settings()
    command_id = command_id or str(uuid.uuid4())
    try:
        outcome = asyncio.run(_publish_and_follow(settings, command, command_id, wait, timeout))
    except (OSError, asyncio.TimeoutError) as error:
        fail(f"no answer from Kafka at {settings.kafka_bootstrap_servers}: {error or 'timed out'}")
    if outcome:
        fail(outcome)


async def _publish_and_follow(settings, command, command_id, wait, timeout) -> str | None:
    if not wait:
        await publish_command(settings.kafka_bootstrap_servers, settings.commands_topic, command, command_id)
        typer.echo(f"sent {type(command).__name__} {command_id}")
        return None
    async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic) as follower:
        await publish_command(settings.kafka_bootstrap_servers, settings.commands_topic, command, command_id)
        typer.echo(f"sent {type(command).__name__} {command_id}")
        return await asyncio.wait_for(_progress(follower, command_id, type(command).__name__), timeout)


async def _progress(follower, command_id, command_type) -> str | None:
    failure = None
    async for envelope in follow_command(follower, command_id, command_type):
        typer.echo(_describe(envelope))
        if envelope.type == "CommandRejected":
            return f"rejected ({envelope.data['code']}): {envelope.data['reason']}"
        if envelope.type == "SnapshotFailed":
            failure = f"snapshot failed: {envelope.data['reason']}"
        if envelope.type == "RestoreFailed":
            return f"restore failed: {envelope.data['reason']}"
        if envelope.type == "SnapshotCopyFailed":
            return f"copy failed: {envelope.data['reason']}"
        if envelope.data.get("warning"):
            typer.echo(f"warning: {_printable(envelope.data['warning'])}", err=True)
    return failure


def _describe(envelope) -> str:
    return _line(envelope.time, envelope.type, envelope.data)


def _line(moment: datetime, event_type: str, data: dict) -> str:
    data = dict(data)
    subject = data.pop("cluster_name", "")
    if "snapshot_name" in data:
        subject += "/" + data.pop("snapshot_name")
    details = " ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "") and k != "warning")
    return _printable(f"{moment:%H:%M:%S} {event_type:<20} {subject} {details}".rstrip())


def _printable(text: str) -> str:
    """Never print a raw control character (an event's text comes from other people)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def _get(path: str, params: dict) -> dict:
    try:
        return ApiClient(Settings()).call("GET", path, params=params)
    except ApiError as error:
        fail(str(error))


def main() -> None:
    from services.snapshots.cli_policies import policy_cli
    from services.snapshots.cli_tokens import token_cli

    cli.add_typer(token_cli, name="token")
    cli.add_typer(policy_cli, name="policy")
    try:
        cli()
    except KafkaSettingsError as error:  # a bad KAFKA_* variable: one line, not a traceback
        typer.echo(f"snapshotctl: {error}", err=True)
        sys.exit(2)
