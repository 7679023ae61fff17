"""`snapshotctl`: the command line of dws-snapshots (SPEC.md, "Command line").

Commands only translate arguments into commands or queries; exit 0 when done, non-zero
with a one-line reason on stderr when rejected, failed or cancelled. Every verb that prints
takes `--json`; every write verb takes `--command-id` (the same id again is the same
command: a retried call has one effect). What is printed, and how: `cli_output.py`."""

import asyncio
import sys
from urllib.parse import quote

import typer

from events.commands import (CancelSnapshotRequested, CopySnapshotRequested, CreateSnapshotRequested,
                             DeleteSnapshotRequested, RegisterCluster, RestoreSnapshotRequested)
from events.kafka import KafkaSettingsError
from events.vocabulary import DriverName, name_key
from services.snapshots import bootstrap, replay as replay_jobs, supervisor
from services.snapshots.api_client import ApiClient, ApiError
from services.snapshots.cli_output import (api_event_line, cluster_table, console, fail, print_json,
                                           snapshot_details, snapshot_table)
from services.snapshots.cli_submit import describe_event, submit
from services.snapshots.client import EventFollower
from services.snapshots.settings import Settings

# Tracebacks never show local variables: one of them may hold os.environ or a password.
cli = typer.Typer(help="dws-snapshots: the snapshot control plane for warehouse clusters.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
__all__ = ["cli", "console", "fail", "main"]  # cli_tokens uses console and fail


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
COMMAND_ID = typer.Option(None, "--command-id", help="the command's id (idempotency key): "
                                                      "a retried call with the same id is the same command")
JSON = typer.Option(False, "--json", help="print JSON (with --wait: the command's outcome and events)")


@cli.command()
def create(cluster: str, name: str, description: str = typer.Option("", "--description", "-d"),
           wait: bool = typer.Option(False, "--wait", help="show progress until the outcome"),
           timeout: float = typer.Option(600.0, help="seconds to wait with --wait"),
           retention_days: int = typer.Option(-1, "--retention-days", help="-1 (keep forever) or 1-3653"),
           online: bool = typer.Option(False, "--online", help="postgres: read-only only until the dump's snapshot is taken"),
           via: str = VIA, command_id: str = COMMAND_ID, as_json: bool = JSON) -> None:
    """Request a snapshot NAME of CLUSTER (--wait: its progress, then its outcome)."""
    command = CreateSnapshotRequested(cluster_name=cluster, snapshot_name=name, description=description,
                                      retention_days=retention_days, online=online)
    submit(command, ("POST", "/snapshots", command.model_dump()), wait, timeout, via, command_id,
           as_json=as_json)


@cli.command()
def cancel(cluster: str, name: str, wait: bool = typer.Option(False, "--wait"),
           timeout: float = typer.Option(120.0), via: str = VIA, command_id: str = COMMAND_ID,
           as_json: bool = JSON) -> None:
    """Cancel snapshot NAME of CLUSTER while it is Creating: the copy stops, its files go."""
    command = CancelSnapshotRequested(cluster_name=cluster, snapshot_name=name)
    submit(command, ("POST", f"/snapshots/{quote(name, safe='')}/cancel", None), wait, timeout, via,
           command_id, expect_cluster=cluster, as_json=as_json)


@cli.command()
def delete(cluster: str, name: str, wait: bool = typer.Option(False, "--wait"),
           timeout: float = typer.Option(120.0), via: str = VIA, command_id: str = COMMAND_ID,
           as_json: bool = JSON) -> None:
    """Delete snapshot NAME of CLUSTER (Available, Failed or Cancelled) and its files."""
    command = DeleteSnapshotRequested(cluster_name=cluster, snapshot_name=name)
    submit(command, ("DELETE", f"/snapshots/{quote(name, safe='')}", None), wait, timeout, via,
            command_id, expect_cluster=cluster, as_json=as_json)


@cli.command()
def restore(cluster: str, name: str, target_cluster: str,
            wait: bool = typer.Option(False, "--wait"), timeout: float = typer.Option(3600.0),
            via: str = VIA, command_id: str = COMMAND_ID, as_json: bool = JSON) -> None:
    """Restore snapshot NAME of CLUSTER into a new cluster TARGET_CLUSTER."""
    command = RestoreSnapshotRequested(cluster_name=cluster, snapshot_name=name,
                                       target_cluster_name=target_cluster)
    submit(command, ("POST", f"/snapshots/{quote(name, safe='')}/restore",
                      {"target_cluster_name": target_cluster}), wait, timeout, via, command_id,
            expect_cluster=cluster, as_json=as_json)


@cli.command()
def copy(cluster: str, name: str, to: str = typer.Option(..., "--to", help="a repository URL in SNAPSHOT_COPY_TARGETS"),
         wait: bool = typer.Option(False, "--wait"), timeout: float = typer.Option(3600.0),
         via: str = VIA, command_id: str = COMMAND_ID, as_json: bool = JSON) -> None:
    """Copy snapshot NAME of CLUSTER to another repository (s3://bucket/prefix), verified there."""
    command = CopySnapshotRequested(cluster_name=cluster, snapshot_name=name, target_repository=to)
    submit(command, ("POST", f"/snapshots/{quote(name, safe='')}/copy", {"target_repository": to}),
           wait, timeout, via, command_id, expect_cluster=cluster, as_json=as_json)


@cli.command("register-cluster")
def register_cluster(name: str, target: str = typer.Option(..., help="file path or password-free URL"),
                     driver: str = typer.Option("sqlite", help="sqlite or postgres"),
                     wait: bool = typer.Option(True, help="wait for the outcome"),
                     timeout: float = 60.0, via: str = VIA, command_id: str = COMMAND_ID,
                     as_json: bool = JSON) -> None:
    """Register a cluster the service can snapshot (an admin token)."""
    if driver not in set(DriverName):
        fail(f"unknown driver {driver!r}: use " + " or ".join(DriverName), 2)
    command = RegisterCluster(cluster_name=name, driver=driver, target=target)
    submit(command, ("POST", "/clusters", command.model_dump(mode="json")), wait, timeout, via, command_id,
            as_json=as_json)


@cli.command("list")
def list_snapshots(cluster: str = typer.Option(None), status: str = typer.Option(None),
                   snapshot_type: str = typer.Option(None, "--type", help="Manual or Automated"),
                   since: str = typer.Option(None, help="started at or after (ISO 8601, UTC if no zone)"),
                   until: str = typer.Option(None, help="started at or before (ISO 8601)"),
                   name: str = typer.Option(None, "--name", help="the name contains this (any case)"),
                   sort: str = typer.Option("-started", help="-started (newest first) or started"),
                   limit: int = 100, offset: int = 0, as_json: bool = JSON) -> None:
    """Show the snapshot list, newest first."""
    params = {k: v for k, v in dict(cluster=cluster, status=status, type=snapshot_type, since=since,
                                    until=until, q=name, sort=sort, limit=limit, offset=offset).items()
              if v is not None}
    body = _get("/snapshots", params)
    if as_json:
        return print_json(body)
    console.print(snapshot_table(body["snapshots"]))
    console.print(f"{body['count']} snapshot(s)")


@cli.command()
def describe(name: str, as_json: bool = JSON) -> None:
    """Show one snapshot: status, sizes, times, reason or warning, and its progress while Creating."""
    body = _get(f"/snapshots/{quote(name, safe='')}", {})
    if as_json:
        return print_json(body)
    console.print(snapshot_details(body))


@cli.command()
def history(cluster: str, snapshot: str = typer.Option(None, "--snapshot", help="only this snapshot's events"),
            as_json: bool = JSON) -> None:
    """Show the recorded events of CLUSTER (or of one of its snapshots), oldest first, with who caused them."""
    path = (f"/snapshots/{quote(snapshot, safe='')}/history" if snapshot
            else f"/clusters/{quote(cluster, safe='')}/history")
    body = _get(path, {})
    if snapshot:
        body["events"] = [e for e in body["events"] if name_key(e["data"]["cluster_name"]) == name_key(cluster)]
    if as_json:
        return print_json(body)
    for event in body["events"]:
        typer.echo(api_event_line(event))


@cli.command()
def clusters(status: str = typer.Option(None), as_json: bool = JSON) -> None:
    """Show the clusters and their status."""
    body = _get("/clusters", {"status": status} if status else {})
    if as_json:
        return print_json(body)
    console.print(cluster_table(body["clusters"]))


@cli.command()
def watch(from_beginning: bool = typer.Option(False, "--from-beginning"),
          as_json: bool = typer.Option(False, "--json", help="one CloudEvent (JSON) a line")) -> None:
    """Follow status events live (Ctrl-C to stop)."""
    settings = Settings()

    async def follow() -> None:
        async with EventFollower(settings.kafka_bootstrap_servers, settings.events_topic,
                                 from_beginning) as follower:
            async for envelope in follower.events():
                typer.echo(envelope.model_dump_json(exclude_none=True) if as_json else describe_event(envelope))

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:
        pass


@cli.command()
def replay(republish: bool = typer.Option(False, help="also re-send history to the events topic"),
           as_json: bool = JSON) -> None:
    """Rebuild the read model from the event store (optionally re-publish history)."""
    settings = Settings()
    parts = bootstrap.build_replay(settings)
    applied, sent = replay_jobs.rebuild_views(parts, settings.service_id), None
    if not as_json:
        typer.echo(f"rebuilt the views from {applied} stored events")
    if republish:
        sent = asyncio.run(replay_jobs.republish(parts, settings.kafka_bootstrap_servers,
                                                 settings.events_topic, settings.service_id))
        if not as_json:
            typer.echo(f"re-published {sent} events to {settings.events_topic}")
    if as_json:
        print_json({"applied": applied, "republished": sent})


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
