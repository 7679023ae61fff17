"""`snapshotctl token create|list|revoke`: API tokens, written to the token store directly
(where the service's data is), so no token is needed to make the first one."""

import json

import typer
from rich.table import Table

from services.snapshots import bootstrap
from services.snapshots.cli import console, fail
from services.snapshots.settings import Settings
from services.snapshots.tokens import TokenError

token_cli = typer.Typer(help="API tokens (written to the token store directly: no token needed).",
                        no_args_is_help=True)


@token_cli.command("create")
def token_create(name: str, role: str = typer.Option("viewer", help="viewer, operator or admin"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Create a token; it is shown once, alone on the last line."""
    try:
        token = bootstrap.make_token_store(Settings()).create(name, role)
    except TokenError as error:
        fail(str(error), 2)
    if as_json:
        typer.echo(json.dumps({"name": name, "role": role, "token": token}))
        return
    typer.echo(f"created token {name!r} with the role {role}; it is shown only now:")
    typer.echo(token)


@token_cli.command("list")
def token_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the tokens (names, roles, dates; never the tokens themselves)."""
    rows = [{"name": t.name, "role": str(t.role), "created_at": t.created_at.isoformat(),
             "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}
            for t in bootstrap.make_token_store(Settings()).list()]
    if as_json:
        typer.echo(json.dumps({"tokens": rows}, indent=2))
        return
    table = Table("Name", "Role", "Created", "Revoked")
    for row in rows:
        table.add_row(row["name"], row["role"], row["created_at"], row["revoked_at"] or "")
    console.print(table)


@token_cli.command("revoke")
def token_revoke(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a token: it stops working at once."""
    if not bootstrap.make_token_store(Settings()).revoke(name):
        fail(f"no live token named {name!r}")
    typer.echo(json.dumps({"revoked": name}) if as_json else f"revoked token {name!r}")
