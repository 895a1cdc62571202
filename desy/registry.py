"""Where the model lives: the MLflow tracking URI, the registered model and its champion.

The one place that knows the default store (a SQLite file under mlruns/, artifacts beside it)
and how the serving alias is looked up; the pipeline, the server and the demo all use it.
`python -m desy.registry` prints the tracking URI in use (the Makefile's mlflow-ui uses it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAME = "desy-nids"
CHAMPION_ALIAS = "champion"
EXPERIMENT_NAME = "desy-nids"
SQLITE = "sqlite:///"
DEFAULT_TRACKING_URI = f"{SQLITE}mlruns/mlflow.db"
#: File names of the extra artifacts stored next to the sklearn model.
ONNX_FILE = "model.onnx"
META_FILE = "desy_meta.json"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the project's SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def absolute_store(uri: str) -> str:
    """A relative SQLite store resolved against the current directory (for a process that
    changes directory, such as the server)."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(Path(uri.removeprefix(SQLITE)).resolve())
    return uri


def prepare_store(uri: str) -> str | None:
    """Create a SQLite store's directory; the artifact location for a new experiment there
    (artifacts/ beside the database file), or None to let the tracking server decide."""
    if not uri.startswith(SQLITE):
        return None
    database = Path(uri.removeprefix(SQLITE))
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.resolve().parent / "artifacts").as_uri()


def model_uri(version: str) -> str:
    """Model URI of one registered version."""
    return f"models:/{MODEL_NAME}/{version}"


def champion(client: MlflowClient) -> ModelVersion | None:
    """The champion's model version, None when the registry has none (or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        return None


def promote(client: MlflowClient, version: str) -> None:
    """Make version the champion."""
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)


if __name__ == "__main__":
    print(tracking_uri())
