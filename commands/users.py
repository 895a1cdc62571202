"""`desy users add|password|remove|list`: analysts' accounts for the dashboard."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from commands.store import StoreUrl, open_store, store_errors

app = typer.Typer(
    help="Analysts' accounts for the dashboard (kept in the alert store).", no_args_is_help=True
)
UserName = Annotated[str, typer.Argument(help="The analyst's user name.")]
PasswordStdin = Annotated[
    bool, typer.Option(help="Read the password from standard input (else a random one is made).")
]


def _password(from_stdin: bool) -> str | None:
    """The password on standard input (exits if there is none), or None: make one."""
    if not from_stdin:
        return None
    if not (password := sys.stdin.readline().rstrip("\r\n")):
        typer.echo("error: no password on standard input", err=True)
        raise typer.Exit(2)
    return password


def _on_accounts(store_url: str | None, action: Any, *args: Any) -> Any:
    """action(engine, *args) on the store's accounts; a refusal exits with its reason."""
    from alerts.accounts import AccountError

    engine = open_store(store_url)
    try:
        with store_errors(engine.url):
            return action(engine, *args)
    except AccountError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("add")
def users_add(
    name: UserName, password_stdin: PasswordStdin = False, store_url: StoreUrl = None
) -> None:
    """Add an analyst; from then on the dashboard signs every analyst in with their own account."""
    from alerts.accounts import add_user

    password = _on_accounts(store_url, add_user, name, _password(password_stdin))
    typer.echo(f"analyst {name} added", err=True)
    if not password_stdin:
        typer.echo(f"password (shown once, only its hash is kept): {password}")


@app.command("password")
def users_password(
    name: UserName, password_stdin: PasswordStdin = False, store_url: StoreUrl = None
) -> None:
    """Give an analyst a new password; their sessions end."""
    from alerts.accounts import set_password

    password = _on_accounts(store_url, set_password, name, _password(password_stdin))
    if not password_stdin:
        typer.echo(f"new password (shown once): {password}")


@app.command("remove")
def users_remove(name: UserName, store_url: StoreUrl = None) -> None:
    """Remove an analyst and end their sessions (what they did stays in the audit trail)."""
    from alerts.accounts import remove_user

    _on_accounts(store_url, remove_user, name)
    typer.echo(f"analyst {name} removed", err=True)


@app.command("list")
def users_list(store_url: StoreUrl = None) -> None:
    """The analysts' accounts, and when each was added."""
    from alerts.accounts import list_users

    for name, created in _on_accounts(store_url, list_users):
        typer.echo(f"{name}\t{time.strftime('%Y-%m-%d %H:%M', time.gmtime(created))}")
