"""Loading the champion from the MLflow registry and running it with ONNX Runtime."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desy import schema
from desy.inference import OnnxModel
from desy.registry import CHAMPION_ALIAS, META_FILE, MODEL_NAME, ONNX_FILE, champion_uri, tracking_uri

log = logging.getLogger("desy.serving")


class NoChampionError(RuntimeError):
    """The registry has no champion to serve."""


@dataclass
class Champion:
    """The served model: its registry version and ONNX session."""

    version: str
    model: OnnxModel

    def classify(self, columns: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """Verdicts in input order."""
        verdicts = self.model.classify(columns)
        probabilities = np.round(verdicts.attack_probability, 6).tolist()
        return [
            {"label": "attack" if attack else "normal", "attack_probability": p, "category": c}
            for attack, p, c in zip(verdicts.is_attack.tolist(), probabilities, verdicts.category.tolist())
        ]


def load_champion(threads: int = 1) -> Champion:
    """Download models:/desy-nids@champion's ONNX export and metadata and open a session."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version
    except MlflowException as err:
        raise NoChampionError(
            f"no {MODEL_NAME}@{CHAMPION_ALIAS} in the MLflow registry at {uri}: train one with `dvc repro` ({err})"
        ) from None
    directory = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion_uri()))
    meta = json.loads((directory / META_FILE).read_text())
    if list(meta["features"]) != list(schema.FEATURE_NAMES):
        raise RuntimeError(f"champion v{version} was trained on other features than desy.schema defines")
    log.info("serving %s v%s (thresholds %s) from %s", MODEL_NAME, version, meta["threshold"], uri)
    return Champion(version=str(version), model=OnnxModel(directory / ONNX_FILE, meta, threads))
