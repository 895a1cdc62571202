"""Stage 3: fit the pipeline on the train split and pick the alert threshold on the validation split.

Only KDDTrain+ data is used here. The threshold is the lowest one whose false-alarm rate on the
validation split's normal connections stays within train.false_alarm_budget.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from desy import schema
from desy.registry import META_FILE, ONNX_FILE
from pipelines import config
from pipelines.model import build_pipeline, choose_threshold, to_onnx
from pipelines.prepare import load

log = logging.getLogger("desy.train")

MODEL_FILE = "model.joblib"
#: Budgets reported next to the chosen one, so the cost of each is visible.
BUDGET_SWEEP = (0.001, 0.005, 0.01, 0.02, 0.05)


def attack_scores(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """1 - P(normal) for each record."""
    proba = pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)])
    return 1.0 - proba[:, list(pipeline.classes_).index("normal")]


def operating_point(scores: np.ndarray, is_attack: np.ndarray, threshold: float) -> dict[str, float]:
    """False-alarm and detection rates of one threshold."""
    flagged = scores >= threshold
    return {
        "threshold": float(threshold),
        "false_alarm_rate": float(flagged[is_attack == 0].mean()),
        "detection_rate": float(flagged[is_attack == 1].mean()),
    }


def train(train_frame: pd.DataFrame, validation: pd.DataFrame, params: dict[str, Any]) -> tuple[Pipeline, dict[str, Any]]:
    """Fit on train_frame, choose the threshold on validation; returns the pipeline and its metadata."""
    pipeline = build_pipeline(params)
    started = time.perf_counter()
    pipeline.fit(train_frame[list(schema.FEATURE_NAMES)], train_frame["category"])
    log.info("fitted %d trees on %d rows in %.1f s", params["n_estimators"], len(train_frame), time.perf_counter() - started)
    scores = attack_scores(pipeline, validation)
    is_attack = validation["is_attack"].to_numpy()
    normal_scores = scores[is_attack == 0]
    budget = params["false_alarm_budget"]
    threshold = choose_threshold(normal_scores, budget)
    meta = {
        "classes": [str(c) for c in pipeline.classes_],
        "features": list(schema.FEATURE_NAMES),
        "threshold": threshold,
        "false_alarm_budget": budget,
        "validation": operating_point(scores, is_attack, threshold),
        "validation_at_0_5": operating_point(scores, is_attack, 0.5),
        "budget_sweep": {str(b): operating_point(scores, is_attack, choose_threshold(normal_scores, b)) for b in BUDGET_SWEEP},
    }
    log.info(
        "threshold %.4f: validation false alarms %.4f (budget %.4f), detection %.4f",
        threshold, meta["validation"]["false_alarm_rate"], budget, meta["validation"]["detection_rate"],
    )
    return pipeline, meta


def save(pipeline: Pipeline, meta: dict[str, Any], out_dir: Path) -> None:
    """Write model.joblib, model.onnx and the metadata JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out_dir / MODEL_FILE)
    (out_dir / ONNX_FILE).write_bytes(to_onnx(pipeline))
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_model(directory: Path = config.MODEL_DIR) -> tuple[Pipeline, dict[str, Any]]:
    """Read back what save() wrote."""
    return joblib.load(directory / MODEL_FILE), json.loads((directory / META_FILE).read_text())


def main() -> None:
    config.setup_logging()
    params = config.load_params()
    pipeline, meta = train(load("train"), load("validation"), params["train"])
    save(pipeline, meta, config.MODEL_DIR)
    config.REPORTS.mkdir(parents=True, exist_ok=True)
    (config.REPORTS / "threshold.json").write_text(json.dumps(meta["validation"] | {"budget": meta["false_alarm_budget"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
