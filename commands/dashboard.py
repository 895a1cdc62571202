"""`desy dashboard`: the analysts' dashboard over the alert store."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from commands.listening import (
    Host,
    Insecure,
    Port,
    check_tls,
    checked_settings,
    is_loopback,
    refuse_open_without_token,
)
from commands.store import StoreUrl, open_store, store_errors
from serving.settings import ConnectionLimits


def _pem(envvar: str, help_text: str) -> Any:
    """A PEM file option."""
    return Annotated[
        Path | None, typer.Option(envvar=envvar, exists=True, dir_okay=False, help=help_text)
    ]


Certificate = _pem("DESY_DASHBOARD_SSL_CERTFILE", "Serve HTTPS with this certificate (PEM).")
PrivateKey = _pem("DESY_DASHBOARD_SSL_KEYFILE", "Its private key (PEM).")
Token = Annotated[
    str | None,
    typer.Option(
        envvar="DESY_DASHBOARD_TOKEN",
        help="Password for HTTP Basic auth (any user name: the analyst's), while the store has "
        "no analysts' accounts (`desy users add`).",
    ),
]
CLEAR_PASSWORDS = (
    "warning: without --ssl-certfile/--ssl-keyfile, analysts' passwords and sessions cross the "
    "network in clear unless a TLS proxy is in front (then set FORWARDED_ALLOW_IPS to its "
    "address: its X-Forwarded-Proto makes the cookie Secure and the log names the real client)"
)


def _log_to_stderr(name: str) -> None:
    """INFO and above of logger name to standard error, with the time (for fail2ban and the like)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _check_access(host: str, token: str | None, accounts: bool, insecure: bool, tls: bool) -> None:
    """Exit if the dashboard would be open to the network; warn of a token that does not count
    and of passwords in clear."""
    refuse_open_without_token(
        host, token or accounts, insecure, "DESY_DASHBOARD_TOKEN", " add analysts (desy users add),"
    )
    if accounts and token:
        typer.echo(
            "analysts' accounts exist: each signs in with their own, the token is not accepted",
            err=True,
        )
    if accounts and not tls and not is_loopback(host):
        typer.echo(CLEAR_PASSWORDS, err=True)


def dashboard(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    store_url: StoreUrl = None,
    token: Token = None,
    insecure: Insecure = False,
    ssl_certfile: Certificate = None,
    ssl_keyfile: PrivateKey = None,
) -> None:
    """The analysts' dashboard over the alert store: inbox, triage, overview, agents, suppressions."""
    import uvicorn

    from alerts.accounts import any_users
    from dashboard.app import create_app
    from serving.http_limits import limit_headers

    check_tls(ssl_certfile, ssl_keyfile)
    limits = checked_settings(ConnectionLimits)
    engine = open_store(store_url)
    with store_errors(engine.url):
        accounts = any_users(engine)
    _check_access(host, token, accounts, insecure, tls=ssl_certfile is not None)
    scheme = "https" if ssl_certfile else "http"
    typer.echo(
        f"DeSy dashboard on {scheme}://{host}:{port} (alert store {engine.url.render_as_string()})",
        err=True,
    )
    limit_headers(limits.header_timeout, limits.body_timeout)
    _log_to_stderr("desy")
    uvicorn.run(
        create_app(engine, token, getpass.getuser(), open_access=is_loopback(host) or insecure),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
