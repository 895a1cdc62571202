"""The model server's settings: one object, read from the DESY_* environment and checked once.

Each field is the variable DESY_<FIELD> and the option --<field> of `desy serve` (api_token's
is --token); the option wins, and an empty variable counts as unset. `desy serve` checks them, then hands them to BentoML's
worker processes as the environment (`ServerSettings.environ`), which each worker reads back here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, FilePath, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.cpus import usable

PREFIX = "DESY_"


class SettingsError(ValueError):
    """A setting with a bad value; the message names its variable (or option) and the value."""


def _seconds(raw: Any) -> float:
    """A time limit: seconds strictly between 0 and 3600."""
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds < 3600:
        raise ValueError("must be seconds between 0 and 3600")
    return seconds


Seconds = Annotated[float, BeforeValidator(_seconds)]
Positive = Annotated[float, Field(gt=0)]
AbsolutePath = Annotated[Path, AfterValidator(Path.resolve)]
AbsoluteFile = Annotated[FilePath, AfterValidator(Path.resolve)]


class ConnectionLimits(BaseSettings):
    """How long a client may take over a request: the model server's and the dashboard's."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True)

    header_timeout: Seconds = Field(
        10.0, description="Seconds a connection may take to send its request headers."
    )
    body_timeout: Seconds = Field(
        60.0, description="Seconds a request may take to send its body once its headers are in."
    )


class ServerSettings(ConnectionLimits):
    """What `desy serve` and its workers run with."""

    port: int = Field(3000, ge=1, le=65535, description="TCP port.")
    workers: Annotated[int, Field(ge=0), AfterValidator(lambda count: count or usable())] = Field(
        0, description="Server processes (0: one per usable core, within a container's CPU quota)."
    )
    api_token: str | None = Field(None, description="Bearer token required on /classify.")
    agents_file: AbsolutePath | None = Field(
        None, description="Agents with a token each (`desy agents add`); replaces the token."
    )
    max_body_mb: int = Field(16, ge=1, description="Largest /classify body accepted, MiB.")
    access_log: bool = Field(
        False, description="A log line per request (a third of a single-flow request's time)."
    )
    store_url: str = Field(
        "", description="The alert store: sqlite:///file or postgresql://user@host/db."
    )
    store_all: bool = Field(False, description="Record normal verdicts too.")
    store_retention_days: Positive = Field(
        30.0, description="Alerts and counts older than this many days are deleted."
    )
    store_max_mb: int = Field(
        1024, ge=1, description="SQLite: the oldest alerts go once the data passes this, MiB."
    )
    store_wait_seconds: Positive = Field(
        5.0, description="Seconds a request waits for the store to commit its batch, then 503."
    )
    incident_quiet_seconds: Positive = Field(
        900.0, description="Seconds without an alert of it after which an incident is over."
    )
    webhook_url: str = Field("", description="POST new incidents there as JSON (empty: none).")
    webhook_interval: Positive = Field(
        10.0, description="Seconds between two webhook notifications of new incidents, at least."
    )
    webhook_digest_interval: Positive = Field(
        300.0, description="Seconds between two webhook digests of incidents' growth, at least."
    )
    ssl_certfile: AbsoluteFile | None = Field(
        None, description="Serve HTTPS with this certificate (PEM)."
    )
    ssl_keyfile: AbsoluteFile | None = Field(None, description="Its private key (PEM).")

    def environ(self) -> dict[str, str]:
        """These settings as the variables that hand them to the worker processes."""
        return {variable(name): _text(value) for name, value in self}


def variable(field: str) -> str:
    """The environment variable of a setting."""
    return PREFIX + field.upper()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


Settings = TypeVar("Settings", bound=ConnectionLimits)


def read(kind: type[Settings], **options: Any) -> Settings:
    """kind's settings from the environment, options (by field name) winning over it; a bad value
    raises SettingsError naming each faulty variable, or option, with its value."""
    try:
        return kind(**options)
    except ValidationError as err:
        faults = dict.fromkeys(_fault(error, options) for error in err.errors())
        raise SettingsError("; ".join(faults)) from None


def _fault(error: Any, options: dict[str, Any]) -> str:
    """One line for a validation error: the variable (or option), what is wrong, the value."""
    field = str(error["loc"][0])
    where = f"--{field.replace('_', '-')}" if field in options else variable(field)
    reason = error["msg"].removeprefix("Value error, ")
    return f"{where} {reason[0].lower()}{reason[1:]}, not {str(error['input'])!r}"
