"""`desy`: the DeSy command line (model server)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from desy import PROJECT, cpus
from desy.registry import absolute_store, tracking_uri

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(
    help="DeSy: network intrusion detection on NSL-KDD features.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """DeSy command line."""


def is_loopback(host: str) -> bool:
    """Whether host only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store_url(url: str | None) -> str:
    """The alert store's URL (the default one if None), checked; exits with a clear error."""
    from alerts.database import check_url, default_url

    url = url or default_url()
    try:
        check_url(url)
    except ValueError as err:
        typer.echo(f"error: alert store {url!r}: {err}", err=True)
        raise typer.Exit(2) from None
    return url


def _store_name(url: Any) -> str:
    """What the alert store at url is, for an error message: never its password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"PostgreSQL database {parsed.database!r} on {host}:{parsed.port or 5432}"


@contextmanager
def _store_errors(url: Any) -> Iterator[None]:
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


def _open_store(store_url: str | None) -> Engine:
    """The alert store (the default one if None), migrated; exits with a clear error if it
    cannot be opened."""
    from alerts.database import engine_for, migrate

    url = absolute_store(_store_url(store_url))
    with _store_errors(url):
        engine = engine_for(url)
        migrate(engine)
    return engine


def server_home(port: int) -> Path:
    """BentoML's home for the server on this port: its Prometheus files are its own (BentoML
    wipes the directory at start, so servers sharing one home wipe each other's /metrics)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "desy" / f"bentoml-{port}"


Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="TCP port.")]
Insecure = Annotated[bool, typer.Option(help="Allow a non-loopback address without a token.")]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        envvar="DESY_STORE_URL",
        help="Alert store: sqlite:///file or postgresql://user@host/db (default: a SQLite file under ~/.local/share/desy).",
    ),
]


def _pem(envvar: str, help_text: str) -> Any:
    """A PEM file option."""
    return Annotated[
        Path | None, typer.Option(envvar=envvar, exists=True, dir_okay=False, help=help_text)
    ]


CERTIFICATE, PRIVATE_KEY = "Serve HTTPS with this certificate (PEM).", "Its private key (PEM)."
ServerCertificate = _pem("DESY_SSL_CERTFILE", CERTIFICATE)
ServerKey = _pem("DESY_SSL_KEYFILE", PRIVATE_KEY)
DashboardCertificate = _pem("DESY_DASHBOARD_SSL_CERTFILE", CERTIFICATE)
DashboardKey = _pem("DESY_DASHBOARD_SSL_KEYFILE", PRIVATE_KEY)


def _check_header_timeout() -> float:
    """DESY_HEADER_TIMEOUT, checked; exits with a clear error."""
    from desy.http_limits import header_timeout

    try:
        return header_timeout()
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _log_to_stderr(name: str) -> None:
    """INFO and above of logger name to standard error, with the time (for fail2ban and the like)."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    if (certfile is None) != (keyfile is None):
        typer.echo("error: --ssl-certfile and --ssl-keyfile go together", err=True)
        raise typer.Exit(2)


AgentsFile = Annotated[
    Path | None,
    typer.Option(
        envvar="DESY_AGENTS_FILE",
        help="Agents with a token each (`desy agents add`); replaces --token.",
    ),
]


def _check_agents_file(path: Path) -> None:
    """Exit with a clear error unless path is a valid agents file; warn if it enables none."""
    from desy.agents import AgentsError, load

    if not path.is_file():
        typer.echo(f"error: no agents file {path}: create it with `desy agents add ID`", err=True)
        raise typer.Exit(2)
    try:
        agents = load(path)
    except AgentsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not any(agent.enabled for agent in agents):
        typer.echo(f"warning: {path} enables no agent: every agent is refused", err=True)


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


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DESY_PORT", help="TCP port.")] = 3000,
    workers: Annotated[
        int,
        typer.Option(
            min=0, help="Server processes (0: one per usable core, within a container's CPU quota)."
        ),
    ] = 0,
    token: Annotated[
        str | None,
        typer.Option(envvar="DESY_API_TOKEN", help="Bearer token required on /classify."),
    ] = None,
    insecure: Insecure = False,
    max_body_mb: Annotated[int, typer.Option(help="Largest /classify body accepted, MiB.")] = 16,
    store_url: StoreUrl = None,
    store: Annotated[bool, typer.Option(help="Record attack verdicts in the alert store.")] = True,
    store_all: Annotated[bool, typer.Option(help="Record normal verdicts too.")] = False,
    agents_file: AgentsFile = None,
    ssl_certfile: ServerCertificate = None,
    ssl_keyfile: ServerKey = None,
) -> None:
    """Serve models:/desy-nids@champion over HTTP(S) with BentoML (POST /classify, /livez, /readyz, /metrics)."""
    check_tls(ssl_certfile, ssl_keyfile)
    _check_header_timeout()
    if agents_file is not None:
        _check_agents_file(agents_file)
    refuse_open_without_token(host, token or agents_file, insecure, "DESY_API_TOKEN")
    workers = workers or cpus.usable()
    beside = Path(sys.executable).with_name("bentoml")  # the bentoml of this environment first
    bentoml = str(beside) if beside.exists() else shutil.which("bentoml")
    if bentoml is None:
        typer.echo(
            "error: bentoml is not installed: `uv sync --extra serve` (or `make setup`)", err=True
        )
        raise typer.Exit(2)
    env = dict(
        os.environ,
        DESY_WORKERS=str(workers),
        DESY_MAX_BODY_BYTES=str(max_body_mb * 2**20),
        MLFLOW_TRACKING_URI=absolute_store(tracking_uri()),
        BENTOML_DO_NOT_TRACK="true",
        BENTOML_HOME=str(server_home(port)),
    )
    env["DESY_STORE_URL"] = absolute_store(_store_url(store_url)) if store else ""
    env["DESY_STORE_ALL"] = "1" if store_all else "0"
    env["DESY_AGENTS_FILE"] = str(agents_file.resolve()) if agents_file else ""
    env["DESY_SSL_CERTFILE"] = str(ssl_certfile.resolve()) if ssl_certfile else ""
    env["DESY_SSL_KEYFILE"] = str(ssl_keyfile.resolve()) if ssl_keyfile else ""
    if token:
        env["DESY_API_TOKEN"] = token
    else:
        env.pop("DESY_API_TOKEN", None)
    typer.echo(
        f"DeSy server on {'https' if ssl_certfile else 'http'}://{host}:{port} ({workers} worker(s), "
        f"model registry {env['MLFLOW_TRACKING_URI']})",
        err=True,
    )
    os.execve(
        bentoml,
        [
            bentoml,
            "serve",
            "serving.service:DesyNids",
            "--host",
            host,
            "--port",
            str(port),
            "--working-dir",
            str(PROJECT),
        ],
        env,
    )


@app.command()
def demo(
    pcap: Annotated[
        Path | None,
        typer.Option(
            help="Replay this capture instead of the synthetic demo one.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    iface: Annotated[
        str | None, typer.Option(help="Capture live from this interface instead.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="How long to capture with --iface.")] = 30.0,
    log_dir: Annotated[Path, typer.Option(help="Where the agent writes its logs.")] = Path(
        "logs/demo"
    ),
) -> None:
    """Train if needed, serve the champion, run the agent on a capture and summarise the verdicts."""
    from desy.demo import run_demo

    if log_dir.exists():
        for name in (
            "traffic.txt",
            "flows.jsonl",
            "summary.json",
            "alerts.db",
            "alerts.db-wal",
            "alerts.db-shm",
        ):
            (log_dir / name).unlink(missing_ok=True)
    try:
        run_demo(pcap, iface, log_dir, seconds)
    except (RuntimeError, TimeoutError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def dashboard(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    store_url: StoreUrl = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="DESY_DASHBOARD_TOKEN",
            help="Password for HTTP Basic auth (any user name: the analyst's), while the store has "
            "no analysts' accounts (`desy users add`).",
        ),
    ] = None,
    insecure: Insecure = False,
    ssl_certfile: DashboardCertificate = None,
    ssl_keyfile: DashboardKey = None,
) -> None:
    """The analysts' dashboard over the alert store: inbox, triage, overview, agents, suppressions."""
    import getpass

    import uvicorn

    from alerts.accounts import any_users
    from dashboard.app import create_app
    from desy.http_limits import limit_headers

    check_tls(ssl_certfile, ssl_keyfile)
    header_seconds = _check_header_timeout()
    engine = _open_store(store_url)
    with _store_errors(engine.url):
        accounts = any_users(engine)
    refuse_open_without_token(
        host, token or accounts, insecure, "DESY_DASHBOARD_TOKEN", " add analysts (desy users add),"
    )
    if accounts and token:
        typer.echo(
            "analysts' accounts exist: each signs in with their own, the token is not accepted",
            err=True,
        )
    if accounts and not ssl_certfile and not is_loopback(host):
        typer.echo(
            "warning: without --ssl-certfile/--ssl-keyfile, analysts' passwords and sessions "
            "cross the network in clear unless a TLS proxy is in front (then set "
            "FORWARDED_ALLOW_IPS to its address: its X-Forwarded-Proto makes the cookie Secure "
            "and the log names the real client)",
            err=True,
        )
    scheme = "https" if ssl_certfile else "http"
    typer.echo(
        f"DeSy dashboard on {scheme}://{host}:{port} (alert store {engine.url.render_as_string()})",
        err=True,
    )
    limit_headers(header_seconds)
    _log_to_stderr("desy")
    uvicorn.run(
        create_app(engine, token, getpass.getuser(), open_access=is_loopback(host) or insecure),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


agents = typer.Typer(
    help="The agents a server accepts, each with its own token.", no_args_is_help=True
)
app.add_typer(agents, name="agents")
AGENTS_FILE = Path("agents.json")


@agents.command("add")
def agents_add(
    agent_id: Annotated[str, typer.Argument(help="The new agent's id.")],
    file: AgentsFile = AGENTS_FILE,
) -> None:
    """Register an agent and print its token (once: only its hash is kept)."""
    from desy.agents import AgentsError, add

    try:
        token = add(file, agent_id)
    except AgentsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"agent {agent_id} added to {file}; its token (give it to the agent as DESY_API_TOKEN):",
        err=True,
    )
    typer.echo(token)


@agents.command("list")
def agents_list(file: AgentsFile = AGENTS_FILE) -> None:
    """Every agent and whether it is enabled."""
    from desy.agents import AgentsError, load

    try:
        for agent in load(file):
            typer.echo(f"{agent.id}\t{'enabled' if agent.enabled else 'disabled'}")
    except AgentsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@agents.command("disable")
def agents_disable(agent_id: str, file: AgentsFile = AGENTS_FILE) -> None:
    """Refuse an agent from its next request on (running servers re-read the file)."""
    from desy.agents import AgentsError, disable

    try:
        disable(file, agent_id)
    except AgentsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"agent {agent_id} disabled", err=True)


users = typer.Typer(
    help="Analysts' accounts for the dashboard (kept in the alert store).", no_args_is_help=True
)
app.add_typer(users, name="users")
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

    engine = _open_store(store_url)
    try:
        with _store_errors(engine.url):
            return action(engine, *args)
    except AccountError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@users.command("add")
def users_add(
    name: UserName, password_stdin: PasswordStdin = False, store_url: StoreUrl = None
) -> None:
    """Add an analyst; from then on the dashboard signs every analyst in with their own account."""
    from alerts.accounts import add_user

    password = _on_accounts(store_url, add_user, name, _password(password_stdin))
    typer.echo(f"analyst {name} added", err=True)
    if not password_stdin:
        typer.echo(f"password (shown once, only its hash is kept): {password}")


@users.command("password")
def users_password(
    name: UserName, password_stdin: PasswordStdin = False, store_url: StoreUrl = None
) -> None:
    """Give an analyst a new password; their sessions end."""
    from alerts.accounts import set_password

    password = _on_accounts(store_url, set_password, name, _password(password_stdin))
    if not password_stdin:
        typer.echo(f"new password (shown once): {password}")


@users.command("remove")
def users_remove(name: UserName, store_url: StoreUrl = None) -> None:
    """Remove an analyst and end their sessions (what they did stays in the audit trail)."""
    from alerts.accounts import remove_user

    _on_accounts(store_url, remove_user, name)
    typer.echo(f"analyst {name} removed", err=True)


@users.command("list")
def users_list(store_url: StoreUrl = None) -> None:
    """The analysts' accounts, and when each was added."""
    import time

    from alerts.accounts import list_users

    for name, created in _on_accounts(store_url, list_users):
        typer.echo(f"{name}\t{time.strftime('%Y-%m-%d %H:%M', time.gmtime(created))}")


feedback = typer.Typer(help="Analysts' verdicts back to training.", no_args_is_help=True)
app.add_typer(feedback, name="feedback")


@feedback.command("export")
def feedback_export(
    out: Annotated[
        Path, typer.Option(help="CSV in the site format (site/*.csv joins training).")
    ] = Path("site/feedback.csv"),
    store_url: StoreUrl = None,
) -> None:
    """Write alerts marked false positive or confirmed as labelled flows; `dvc repro` then trains on them."""
    from alerts.feedback import export

    engine = _open_store(store_url)
    with _store_errors(engine.url):
        try:
            rows = export(engine, out)
        except OSError as err:
            typer.echo(f"error: cannot write {out}: {err}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{rows} labelled flows from analysts' verdicts written to {out}", err=True)


if __name__ == "__main__":
    app()
