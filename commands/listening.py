"""What the commands that listen (serve, dashboard) share: their options and start-up checks."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.settings import Settings, SettingsError, read

Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="TCP port.")]
Insecure = Annotated[bool, typer.Option(help="Allow a non-loopback address without a token.")]


def is_loopback(host: str) -> bool:
    """Whether host only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    if (certfile is None) != (keyfile is None):
        typer.echo("error: --ssl-certfile and --ssl-keyfile go together", err=True)
        raise typer.Exit(2)


def refuse_open_without_token(
    host: str, token: object, insecure: bool, variable: str, other: str = ""
) -> None:
    """Exit unless host is loopback, a token is set, or the operator said --insecure."""
    if not is_loopback(host) and not token and not insecure:
        typer.echo(
            f"error: refusing to listen on {host} without a token: set {variable} (or --token),{other} "
            "or pass --insecure to accept unauthenticated requests from the network",
            err=True,
        )
        raise typer.Exit(2)


def checked_settings(kind: type[Settings], **options: Any) -> Settings:
    """kind's settings (serving/settings.py); a bad one exits with a clear error."""
    try:
        return read(kind, **options)
    except SettingsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
