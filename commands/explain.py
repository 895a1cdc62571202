"""`desy explain`: why the model gave a connection its verdict (pipelines.explain)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands.store import StoreUrl, open_store, store_errors
from desy.schema import FEATURE_NAMES

if TYPE_CHECKING:
    from pipelines.explain import Explanation

Record = Annotated[
    Path | None,
    typer.Argument(
        help="A flow record as a JSON object (desy/records.py; a line of an agent's flows.jsonl "
        "is explained under the version its verdict names); - reads standard input."
    ),
]
AlertId = Annotated[int | None, typer.Option("--alert", help="A stored alert's id instead.")]
Version = Annotated[
    str | None,
    typer.Option(
        help="The registered version to explain a record under (default: its verdict's, else "
        "the champion)."
    ),
]
Shown = Annotated[int, typer.Option(min=1, max=len(FEATURE_NAMES), help="Features named.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _read_record(path: Path) -> dict[str, Any]:
    """The record's features from a JSON file (or standard input for -)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        record = json.loads(text)
    except (OSError, ValueError) as err:
        raise _fail(f"cannot read a JSON record from {path}: {err}") from None
    if not isinstance(record, dict):
        raise _fail(f"{path} holds no JSON object")
    missing = [name for name in FEATURE_NAMES if name not in record]
    if missing:
        raise _fail(
            f"the record has no {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}"
        )
    return record


def _said(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(model version, category) of the verdict a record carries (a line of an agent's
    flows.jsonl), or Nones."""
    verdict = record.get("verdict")
    if not isinstance(verdict, dict) or not verdict.get("model_version"):
        return None, None
    return str(verdict["model_version"]), verdict.get("category")


def _champion_version() -> str:
    """The champion's version in the MLflow registry; exits if there is none."""
    import mlflow

    from desy.registry import champion, tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    found = champion(mlflow.MlflowClient())
    if found is None:
        raise _fail(f"no champion in the MLflow registry at {tracking_uri()}", 1)
    return str(found.version)


def _stored(alert_id: int, store_url: str | None) -> tuple[str, dict[str, Any], str]:
    """(model version, features, category) of a stored alert; exits if there is none."""
    from alerts.queries import alert

    engine = open_store(store_url)
    with store_errors(engine.url):
        found = alert(engine, alert_id)
    if found is None:
        raise _fail(f"no alert {alert_id} in the store", 1)
    return found["model_version"], found["features"], found["category"]


def _explained(version: str, features: dict[str, Any], category: str | None) -> Explanation:
    """The explanation, or exit with the registry's or the model's complaint."""
    from mlflow.exceptions import MlflowException

    from pipelines.explain import explain as explain_features

    try:
        return explain_features(version, features, category)
    except MlflowException as err:
        raise _fail(f"model version {version}: {err.message}", 1) from None
    except (ValueError, TypeError) as err:
        raise _fail(f"cannot explain these features: {err}") from None


def explain(
    record: Record = None,
    alert: AlertId = None,
    model_version: Version = None,
    shown: Shown = 10,
    store_url: StoreUrl = None,
) -> None:
    """Each feature's contribution to the verdict's category probability, beside its value and its
    typical value in normal training traffic, for a flow record or a stored alert."""
    if (record is None) == (alert is None):
        raise _fail("give a record (a JSON file, - for standard input) or --alert ID")
    if alert is not None:
        version, features, category = _stored(alert, store_url)
    else:
        features = _read_record(record)
        said_version, said_category = _said(features)
        version = model_version or said_version or _champion_version()
        category = said_category if version == said_version else None
    for line in _explained(version, features, category).lines(shown):
        typer.echo(line)
