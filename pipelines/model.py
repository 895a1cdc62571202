"""The model: one scikit-learn Pipeline from raw records to category probabilities, its ONNX
export, and its files in artifacts/model/ (joblib, ONNX, metadata JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from desy import schema
from desy.registry import META_FILE, ONNX_FILE
from pipelines import config

MODEL_FILE = "model.joblib"


def build_pipeline(params: dict[str, Any]) -> Pipeline:
    """One-hot encode protocol/service/flag (unknown values -> all zeros), pass numbers through,
    then a Random Forest over the five categories."""
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=[
                        list(schema.CATEGORICAL[name]) for name in schema.CATEGORICAL_FEATURES
                    ],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
                list(schema.CATEGORICAL_FEATURES),
            ),
            ("numeric", "passthrough", list(schema.NUMERIC_FEATURES)),
        ]
    )
    forest = RandomForestClassifier(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"],
        min_samples_leaf=params["min_samples_leaf"],
        max_features=params["max_features"],
        class_weight=params["class_weight"],
        random_state=params["seed"],
        n_jobs=-1,
    )
    return Pipeline([("encode", encoder), ("forest", forest)])


def to_onnx(pipeline: Pipeline) -> bytes:
    """Export the fitted pipeline: one [N, 1] input per feature, probabilities as a tensor."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [
        (
            name,
            StringTensorType([None, 1])
            if name in schema.CATEGORICAL
            else FloatTensorType([None, 1]),
        )
        for name in schema.FEATURE_NAMES
    ]
    forest = pipeline.named_steps["forest"]
    onnx_model = convert(pipeline, initial_types=inputs, options={id(forest): {"zipmap": False}})
    return onnx_model.SerializeToString()


def save(pipeline: Pipeline, meta: dict[str, Any], out_dir: Path) -> None:
    """Write model.joblib, model.onnx and the metadata JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out_dir / MODEL_FILE)
    (out_dir / ONNX_FILE).write_bytes(to_onnx(pipeline))
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_model(directory: Path = config.MODEL_DIR) -> tuple[Pipeline, dict[str, Any]]:
    """Read back what save() wrote."""
    return joblib.load(directory / MODEL_FILE), json.loads((directory / META_FILE).read_text())
