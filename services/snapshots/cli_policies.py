"""`snapshotctl policy set|show|remove`: a cluster's snapshot policy (see README,
"Policies and retention"). Writes go through the API (`PUT`/`DELETE /clusters/{name}/policy`,
an operator token) or, with `--via kafka`, onto the bus."""

import json
from urllib.parse import quote

import typer

from events.commands import RemoveSnapshotPolicy, SetSnapshotPolicy
from services.snapshots.cli import COMMAND_ID, JSON, VIA, _get
from services.snapshots.cli_submit import submit

policy_cli = typer.Typer(help="Snapshot policies: a schedule and how long its snapshots are kept.",
                         no_args_is_help=True)


@policy_cli.command("set")
def policy_set(cluster: str,
               schedule: str = typer.Option(..., "--schedule", help="5-field cron (UTC) or rate(N minute[s]|hour[s]|day[s])"),
               keep_days: int = typer.Option(..., "--keep-days", help="days to keep its snapshots, 1-31"),
               wait: bool = typer.Option(True, help="wait for the outcome"), timeout: float = 60.0,
               via: str = VIA, command_id: str = COMMAND_ID, as_json: bool = JSON) -> None:
    """Set (or replace) CLUSTER's snapshot policy."""
    command = SetSnapshotPolicy(cluster_name=cluster, schedule=schedule, keep_days=keep_days)
    submit(command, ("PUT", f"/clusters/{quote(cluster, safe='')}/policy",
                     {"schedule": schedule, "keep_days": keep_days}), wait, timeout, via, command_id,
           as_json=as_json)


@policy_cli.command("remove")
def policy_remove(cluster: str, wait: bool = typer.Option(True, help="wait for the outcome"),
                  timeout: float = 60.0, via: str = VIA, command_id: str = COMMAND_ID,
                  as_json: bool = JSON) -> None:
    """Remove CLUSTER's snapshot policy (its Automated snapshots still expire)."""
    command = RemoveSnapshotPolicy(cluster_name=cluster)
    submit(command, ("DELETE", f"/clusters/{quote(cluster, safe='')}/policy", None), wait, timeout, via,
           command_id, as_json=as_json)


@policy_cli.command("show")
def policy_show(cluster: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show CLUSTER's snapshot policy."""
    policy = _get(f"/clusters/{quote(cluster, safe='')}", {})["policy"]
    if as_json:
        typer.echo(json.dumps({"cluster_name": cluster, "policy": policy}, indent=2))
    elif policy is None:
        typer.echo(f"{cluster}: no snapshot policy")
    else:
        typer.echo(f"{cluster}: schedule {policy['schedule']}, keep_days {policy['keep_days']}")
