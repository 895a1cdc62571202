"""Where the model lives: MLflow tracking URI, registered model name and the serving alias."""

from __future__ import annotations

import os

MODEL_NAME = "desy-nids"
CHAMPION_ALIAS = "champion"
EXPERIMENT_NAME = "desy-nids"
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
#: File names of the extra artifacts stored next to the sklearn model.
ONNX_FILE = "model.onnx"
META_FILE = "desy_meta.json"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the project's SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def champion_uri() -> str:
    """Model URI of the current champion."""
    return f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
