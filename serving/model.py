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
from desy.records import Verdict, verdicts
from desy.registry import (
    CHAMPION_ALIAS,
    META_FILE,
    MODEL_NAME,
    ONNX_FILE,
    champion,
    model_uri,
    tracking_uri,
)

log = logging.getLogger("desy.serving")


class NoChampionError(RuntimeError):
    """The registry has no champion to serve."""


@dataclass
class Champion:
    """The served model: its registry version and ONNX session."""

    version: str
    model: OnnxModel

    def classify(self, columns: dict[str, Sequence[Any]]) -> list[Verdict]:
        """Verdicts in input order."""
        found = self.model.classify(columns)
        probabilities = np.round(found.attack_probability, 6).tolist()
        return verdicts(found.is_attack.tolist(), probabilities, found.category.tolist())


def load_champion(threads: int = 1) -> Champion:
    """Download models:/desy-nids@champion's ONNX export and metadata and open a session."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    found = champion(mlflow.MlflowClient())
    if found is None:
        raise NoChampionError(
            f"no {MODEL_NAME}@{CHAMPION_ALIAS} in the MLflow registry at {uri}: train one with `dvc repro`"
        )
    version = found.version
    directory = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri(version)))
    meta = json.loads((directory / META_FILE).read_text())
    if list(meta["features"]) != list(schema.FEATURE_NAMES):
        raise RuntimeError(
            f"champion v{version} was trained on other features than desy.schema defines"
        )
    log.info("serving %s v%s (thresholds %s) from %s", MODEL_NAME, version, meta["threshold"], uri)
    return Champion(version=str(version), model=OnnxModel(directory / ONNX_FILE, meta, threads))
