"""Turning class probabilities into verdicts, and running the ONNX export of the model.

Shared by the pipeline (threshold choice, evaluation, ONNX parity) and the model server, so both
decide the same way. Needs numpy; onnxruntime only for OnnxModel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desy import schema


@dataclass(frozen=True)
class Decisions:
    """The model's decisions for a batch, as arrays: attack flag, attack probability, category
    (desy.records.verdicts turns them into verdicts)."""

    is_attack: np.ndarray
    attack_probability: np.ndarray
    category: np.ndarray


Threshold = float | Mapping[str, float]


def decide(probabilities: np.ndarray, classes: Sequence[str], threshold: Threshold) -> Decisions:
    """Decisions from per-category probabilities.

    attack probability = 1 - P(normal); the candidate category is the most probable attack
    category (the first in classes' order on a tie). A record is an attack, of its candidate
    category, when cut() says so; otherwise its category is normal.
    """
    classes = list(classes)
    normal = classes.index("normal")
    attack_probability = 1.0 - probabilities[:, normal]
    attack_scores = probabilities.copy()
    attack_scores[:, normal] = -1.0
    candidate = np.asarray(classes, dtype=object)[attack_scores.argmax(axis=1)]
    is_attack = cut(attack_probability, candidate, threshold)
    category = np.where(is_attack, candidate, "normal")
    return Decisions(is_attack=is_attack, attack_probability=attack_probability, category=category)


def cut(attack_probability: np.ndarray, candidate: np.ndarray, threshold: Threshold) -> np.ndarray:
    """Which records alert: those whose attack probability reaches (>=) the threshold, one number
    or the candidate category's (a category without a threshold never alerts)."""
    if isinstance(threshold, Mapping):
        threshold = np.asarray([threshold.get(c, np.inf) for c in candidate], dtype=np.float64)
    return attack_probability >= threshold


def onnx_feeds(columns: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
    """ONNX inputs (one [N, 1] tensor per feature) from column-oriented feature values."""
    feeds = {}
    for name in schema.FEATURE_NAMES:
        values = columns[name]
        if name in schema.CATEGORICAL:
            feeds[name] = np.asarray(values, dtype=object).astype(str).reshape(-1, 1)
        else:
            feeds[name] = np.asarray(values, dtype=np.float32).reshape(-1, 1)
    return feeds


class OnnxModel:
    """The exported pipeline under ONNX Runtime, with the threshold it was trained with."""

    def __init__(self, onnx_path: Path, meta: Mapping[str, Any], threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.classes: list[str] = list(meta["classes"])
        self.threshold: Threshold = meta["threshold"]
        self._proba_output = self.session.get_outputs()[1].name

    @classmethod
    def from_dir(
        cls, directory: Path, meta_file: str, onnx_file: str, threads: int = 1
    ) -> OnnxModel:
        """Load model.onnx and its metadata JSON from one directory."""
        meta = json.loads((directory / meta_file).read_text())
        return cls(directory / onnx_file, meta, threads)

    def predict_proba(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Class probabilities, columns in self.classes order."""
        (proba,) = self.session.run([self._proba_output], onnx_feeds(columns))
        return np.asarray(proba, dtype=np.float64)

    def classify(self, columns: Mapping[str, Sequence[Any]]) -> Decisions:
        """Decisions for column-oriented records (desy.records.model_columns)."""
        return decide(self.predict_proba(columns), self.classes, self.threshold)
