"""`desy serve`: the model server, BentoML's processes with the server's settings checked once."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from commands.agents import check_agents_file
from commands.listening import (
    Host,
    Insecure,
    check_tls,
    checked_settings,
    refuse_open_without_token,
)
from commands.project import PROJECT
from commands.store import DEFAULT_STORE, checked_url
from desy.registry import absolute_store, tracking_uri
from serving.settings import ServerSettings, variable


def _setting(field: str, *flags: str, default: object = None) -> Any:
    """The option of a server setting, its help from ServerSettings: unset, the variable's value
    or the default applies."""
    info = ServerSettings.model_fields[field]
    if default is None:
        default = "none" if info.default in (None, "") else info.default
    help_text = f"{info.description} (env var {variable(field)}; default: {default})"
    return typer.Option(*flags, help=help_text, show_default=False)


def server_home(port: int) -> Path:
    """BentoML's home for the server on this port: its Prometheus files are its own (BentoML
    wipes the directory at start, so servers sharing one home wipe each other's /metrics)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "desy" / f"bentoml-{port}"


def _bentoml() -> str:
    """The bentoml of this environment (else the first on PATH); exits if there is none."""
    beside = Path(sys.executable).with_name("bentoml")
    bentoml = str(beside) if beside.exists() else shutil.which("bentoml")
    if bentoml is None:
        typer.echo(
            "error: bentoml is not installed: `uv sync --extra serve` (or `make setup`)", err=True
        )
        raise typer.Exit(2)
    return bentoml


def _settings(params: dict[str, Any], store: bool) -> ServerSettings:
    """The server's settings from the options given and the environment, checked; the alert
    store's URL resolved (the default store unless --no-store)."""
    options = {
        name: value
        for name, value in params.items()
        if name in ServerSettings.model_fields and value is not None
    }
    settings = checked_settings(ServerSettings, **options)
    store_url = checked_url(settings.store_url or None) if store else ""
    return settings.model_copy(update={"store_url": store_url})


def serve(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Annotated[int | None, _setting("port")] = None,
    workers: Annotated[int | None, _setting("workers")] = None,
    api_token: Annotated[str | None, _setting("api_token", "--token")] = None,
    insecure: Insecure = False,
    max_body_mb: Annotated[int | None, _setting("max_body_mb")] = None,
    store_url: Annotated[str | None, _setting("store_url", default=DEFAULT_STORE)] = None,
    store: Annotated[bool, typer.Option(help="Record attack verdicts in the alert store.")] = True,
    store_all: Annotated[bool | None, _setting("store_all")] = None,
    store_retention_days: Annotated[float | None, _setting("store_retention_days")] = None,
    store_max_mb: Annotated[int | None, _setting("store_max_mb")] = None,
    store_wait_seconds: Annotated[float | None, _setting("store_wait_seconds")] = None,
    incident_quiet_seconds: Annotated[float | None, _setting("incident_quiet_seconds")] = None,
    webhook_url: Annotated[str | None, _setting("webhook_url")] = None,
    webhook_interval: Annotated[float | None, _setting("webhook_interval")] = None,
    webhook_digest_interval: Annotated[float | None, _setting("webhook_digest_interval")] = None,
    agents_file: Annotated[Path | None, _setting("agents_file")] = None,
    ssl_certfile: Annotated[Path | None, _setting("ssl_certfile")] = None,
    ssl_keyfile: Annotated[Path | None, _setting("ssl_keyfile")] = None,
    header_timeout: Annotated[float | None, _setting("header_timeout")] = None,
    body_timeout: Annotated[float | None, _setting("body_timeout")] = None,
    access_log: Annotated[bool | None, _setting("access_log")] = None,
) -> None:
    """Serve models:/desy-nids@champion over HTTP(S) with BentoML (POST /classify, /livez, /readyz, /metrics)."""
    settings = _settings(ctx.params, store)
    check_tls(settings.ssl_certfile, settings.ssl_keyfile)
    if settings.agents_file is not None:
        check_agents_file(settings.agents_file)
    token = settings.api_token or settings.agents_file
    refuse_open_without_token(host, token, insecure, "DESY_API_TOKEN")
    bentoml = _bentoml()
    env = {
        **os.environ,
        **settings.environ(),  # how BentoML's workers get the settings
        "MLFLOW_TRACKING_URI": absolute_store(tracking_uri()),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(server_home(settings.port)),
    }
    typer.echo(
        f"DeSy server on {'https' if settings.ssl_certfile else 'http'}://{host}:{settings.port} "
        f"({settings.workers} worker(s), model registry {env['MLFLOW_TRACKING_URI']})",
        err=True,
    )
    service = ["serving.service:DesyNids", "--host", host, "--port", str(settings.port)]
    os.execve(bentoml, [bentoml, "serve", *service, "--working-dir", str(PROJECT)], env)
