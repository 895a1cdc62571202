"""Stage 3: fit the pipeline and pick the alert threshold on validation data.

Training data: KDDTrain+'s train split and the lab's training runs (each lab row weighted by
train.lab_weight). The threshold is the lowest one that keeps two false-alarm budgets: on the lab
validation runs' normal connections (normal traffic alone and during attacks;
train.false_alarm_budget) and on KDDTrain+'s validation split (train.kdd_false_alarm_budget).
No test set is read here.
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
from desy.inference import Threshold, Verdicts, decide
from desy.registry import META_FILE, ONNX_FILE
from pipelines import config
from pipelines.model import build_pipeline, category_thresholds, to_onnx
from pipelines.prepare import load

log = logging.getLogger("desy.train")

MODEL_FILE = "model.joblib"
#: Budgets reported next to the chosen one, so the cost of each is visible.
BUDGET_SWEEP = (0.0025, 0.005, 0.01, 0.02)


def candidates(pipeline: Pipeline, frame: pd.DataFrame) -> Verdicts:
    """Attack probability and most probable attack category of every record (no threshold)."""
    return decide(pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]), pipeline.classes_, 0.0)


def operating_point(found: Verdicts, is_attack: np.ndarray, threshold: Threshold) -> dict[str, float]:
    """False-alarm and detection rates of a threshold on records with known candidates."""
    cut = np.asarray([threshold[c] for c in found.category]) if isinstance(threshold, dict) else threshold
    flagged = found.attack_probability >= cut
    return {
        "false_alarm_rate": float(flagged[is_attack == 0].mean()),
        "detection_rate": float(flagged[is_attack == 1].mean()),
    }


def fit(pipeline: Pipeline, kdd: pd.DataFrame, lab: pd.DataFrame, lab_weight: float) -> Pipeline:
    """Fit on KDD rows (weight 1) and lab rows (weight lab_weight) together."""
    frame = pd.concat([kdd, lab], ignore_index=True)
    weights = np.concatenate([np.ones(len(kdd)), np.full(len(lab), float(lab_weight))])
    return pipeline.fit(frame[list(schema.FEATURE_NAMES)], frame["category"], forest__sample_weight=weights)


def threshold_for(budgets: dict[str, float], found: dict[str, Verdicts], frames: dict[str, pd.DataFrame],
                  floor: float) -> dict[str, float]:
    """Per attack category, the lowest threshold keeping every validation set's normal false
    alarms of that category within the set's budget."""
    per_set = []
    for name, budget in budgets.items():
        normal = frames[name]["is_attack"].to_numpy() == 0
        per_set.append(category_thresholds(found[name].attack_probability[normal], found[name].category[normal], budget, floor))
    return {category: max(t[category] for t in per_set) for category in per_set[0]}


def train(train_frame: pd.DataFrame, validation: pd.DataFrame, params: dict[str, Any],
          lab_train: pd.DataFrame | None = None, lab_validation: pd.DataFrame | None = None) -> tuple[Pipeline, dict[str, Any]]:
    """Fit, choose the thresholds on the validation sets; returns the pipeline and its metadata."""
    lab_train = validation.head(0) if lab_train is None else lab_train
    lab_validation = validation.head(0) if lab_validation is None else lab_validation
    started = time.perf_counter()
    pipeline = fit(build_pipeline(params), train_frame, lab_train, params.get("lab_weight", 1.0))
    log.info("fitted %d trees on %d KDD and %d lab rows in %.1f s", params["n_estimators"], len(train_frame),
             len(lab_train), time.perf_counter() - started)
    frames = {name: frame for name, frame in {"kdd": validation, "lab": lab_validation}.items() if len(frame)}
    found = {name: candidates(pipeline, frame) for name, frame in frames.items()}
    floor = params.get("min_threshold", 0.0)

    def budgets(budget: float) -> dict[str, float]:
        return {"lab": budget, "kdd": params.get("kdd_false_alarm_budget", budget)} if "lab" in frames else {"kdd": budget}

    def point(threshold: Threshold) -> dict[str, dict[str, float]]:
        return {name: operating_point(found[name], frames[name]["is_attack"].to_numpy(), threshold) for name in frames}

    budget = params["false_alarm_budget"]
    threshold = threshold_for(budgets(budget), found, frames, floor)
    sweep = {b: threshold_for(budgets(b), found, frames, floor) for b in BUDGET_SWEEP}
    meta = {
        "classes": [str(c) for c in pipeline.classes_],
        "features": list(schema.FEATURE_NAMES),
        "threshold": threshold,
        "false_alarm_budget": budget,
        "kdd_false_alarm_budget": budgets(budget)["kdd"],
        "validation": point(threshold),
        "validation_at_0_5": point(0.5),
        "budget_sweep": {str(b): {"threshold": t, **point(t)} for b, t in sweep.items()},
    }
    log.info("thresholds %s (false-alarm budgets %s per category): validation %s", threshold, budgets(budget), meta["validation"])
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
    pipeline, meta = train(load("train"), load("validation"), params["train"], load("lab_train"), load("lab_validation"))
    save(pipeline, meta, config.MODEL_DIR)
    config.REPORTS.mkdir(parents=True, exist_ok=True)
    summary = {"threshold": meta["threshold"], "budget": meta["false_alarm_budget"], "validation": meta["validation"]}
    (config.REPORTS / "threshold.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
