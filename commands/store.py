"""The alert store as the commands open it: its option, and one clear line when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from desy.registry import absolute_store

if TYPE_CHECKING:
    from sqlalchemy import Engine

STORE_HELP = "Alert store: sqlite:///file or postgresql://user@host/db"
DEFAULT_STORE = "a SQLite file under ~/.local/share/desy"
StoreUrl = Annotated[
    str | None,
    typer.Option(envvar="DESY_STORE_URL", help=f"{STORE_HELP} (default: {DEFAULT_STORE})."),
]


def checked_url(url: str | None) -> str:
    """The alert store's URL (the default one if None), checked and absolute; exits with a clear
    error."""
    from alerts.database import check_url, default_url

    url = url or default_url()
    try:
        check_url(url)
    except ValueError as err:
        typer.echo(f"error: alert store {url!r}: {err}", err=True)
        raise typer.Exit(2) from None
    return absolute_store(url)


def _store_name(url: Any) -> str:
    """What the alert store at url is, for an error message: never its password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"PostgreSQL database {parsed.database!r} on {host}:{parsed.port or 5432}"


@contextmanager
def store_errors(url: Any) -> Iterator[None]:
    """Exit 1 with one line naming the store and the fault if it cannot be opened or used."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, CommandError, OSError) as err:
        cause = getattr(err, "orig", None) or err  # the driver's own message
        reason = next(iter(str(cause).strip().splitlines()), type(cause).__name__)
        typer.echo(f"error: alert store {_store_name(url)}: {reason}", err=True)
        raise typer.Exit(1) from None


def open_store(store_url: str | None) -> Engine:
    """The alert store (the default one if None), migrated; exits with a clear error if it
    cannot be opened."""
    from alerts.database import engine_for, migrate

    url = checked_url(store_url)
    with store_errors(url):
        engine = engine_for(url)
        migrate(engine)
    return engine
