"""Training: fit the pipeline and pick the alert thresholds on validation data.

Training data: KDDTrain+'s train split and the lab's training and validation runs (each lab row
weighted by train.lab_weight). Each attack category's threshold is the lowest that keeps two
false-alarm budgets: on the lab runs' normal connections (normal traffic alone and during
attacks; train.false_alarm_budget), scored out of fold (train.threshold_folds folds of whole
runs, each scored by a model that never saw it), and on KDDTrain+'s validation split
(train.kdd_false_alarm_budget). No test set is read here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from desy import schema
from desy.inference import Decisions, Threshold, cut, decide
from pipelines.model import build_pipeline
from pipelines.thresholds import held_out_false_alarms, threshold_for

log = logging.getLogger("desy.train")

#: Budgets reported next to the chosen one, so the cost of each is visible.
BUDGET_SWEEP = (0.01, 0.015, 0.02, 0.03, 0.05)


def candidates(pipeline: Pipeline, frame: pd.DataFrame) -> Decisions:
    """Attack probability and most probable attack category of every record (no threshold)."""
    return decide(pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]), pipeline.classes_, 0.0)


def operating_point(
    found: Decisions, is_attack: np.ndarray, threshold: Threshold
) -> dict[str, float]:
    """False-alarm and detection rates of a threshold on records with known candidates."""
    flagged = cut(found.attack_probability, found.category, threshold)
    return {
        "false_alarm_rate": float(flagged[is_attack == 0].mean()),
        "detection_rate": float(flagged[is_attack == 1].mean()),
    }


def typical_normal(frame: pd.DataFrame) -> dict[str, Any]:
    """Each feature's typical value in the normal rows of frame: the median of a number, the
    most common value of a categorical feature (what an explanation shows beside a value)."""
    normal = frame[frame["category"] == "normal"]
    return {
        name: str(normal[name].mode().iloc[0])
        if name in schema.CATEGORICAL
        else float(normal[name].median())
        for name in schema.FEATURE_NAMES
    }


def fit(pipeline: Pipeline, kdd: pd.DataFrame, lab: pd.DataFrame, lab_weight: float) -> Pipeline:
    """Fit on KDD rows (weight 1) and lab rows (weight lab_weight) together."""
    frame = pd.concat([kdd, lab], ignore_index=True)
    weights = np.concatenate([np.ones(len(kdd)), np.full(len(lab), float(lab_weight))])
    return pipeline.fit(
        frame[list(schema.FEATURE_NAMES)], frame["category"], forest__sample_weight=weights
    )


def run_folds(lab: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    """Each lab record's fold: its run's, the runs dealt at random into `threshold_folds` folds."""
    runs = np.asarray(sorted(lab["run"].unique()))
    np.random.default_rng(params["seed"]).shuffle(runs)
    return (
        lab["run"].map(dict(zip(runs, np.arange(len(runs)) % params["threshold_folds"]))).to_numpy()
    )


def out_of_fold(kdd: pd.DataFrame, lab: pd.DataFrame, params: dict[str, Any]) -> Decisions:
    """Candidates of every lab record from a model that never saw its run: the lab's runs in
    `threshold_folds` folds, each scored by a model fitted on KDD and the other folds."""
    fold = run_folds(lab, params)
    probability, category = np.zeros(len(lab)), np.empty(len(lab), dtype=object)
    for k in range(params["threshold_folds"]):
        held = fold == k
        found = candidates(
            fit(build_pipeline(params), kdd, lab[~held], params["lab_weight"]), lab[held]
        )
        probability[held], category[held] = found.attack_probability, found.category
    return Decisions(probability >= 0, probability, category)


def family_false_alarms(
    found: Decisions, frame: pd.DataFrame, threshold: Threshold
) -> dict[str, float]:
    """False-alarm rate on each scenario family's normal records."""
    normal = frame["is_attack"].to_numpy() == 0
    flagged = pd.Series(cut(found.attack_probability, found.category, threshold))[normal]
    return {
        str(k): round(float(v), 6)
        for k, v in flagged.groupby(frame["family"].to_numpy()[flagged.index]).mean().items()
    }


def train(
    train_frame: pd.DataFrame,
    validation: pd.DataFrame,
    params: dict[str, Any],
    lab_train: pd.DataFrame | None = None,
    lab_validation: pd.DataFrame | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit on KDD's train split and the lab's training and validation runs; choose the
    thresholds on KDD's validation split and on the lab runs' out-of-fold scores. Returns the
    pipeline and its metadata (with each feature's typical value in the normal training rows)."""
    labs = [frame for frame in (lab_train, lab_validation) if frame is not None and len(frame)]
    lab = pd.concat(labs, ignore_index=True) if labs else validation.head(0)
    started = time.perf_counter()
    frames = {"kdd": validation}
    found = {}
    if len(lab):
        frames["lab"] = lab
        found["lab"] = out_of_fold(train_frame, lab, params)
    pipeline = fit(build_pipeline(params), train_frame, lab, params.get("lab_weight", 1.0))
    found["kdd"] = candidates(pipeline, validation)
    log.info(
        "fitted %d trees on %d KDD and %d lab rows (and %d folds for thresholds) in %.1f s",
        params["n_estimators"],
        len(train_frame),
        len(lab),
        params.get("threshold_folds", 0) if len(lab) else 0,
        time.perf_counter() - started,
    )
    floor = params.get("min_threshold", 0.0)

    def budgets(budget: float) -> dict[str, float]:
        return (
            {"lab": budget, "kdd": params.get("kdd_false_alarm_budget", budget)}
            if "lab" in frames
            else {"kdd": budget}
        )

    def point(threshold: Threshold) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            name: operating_point(found[name], frames[name]["is_attack"].to_numpy(), threshold)
            for name in frames
        }
        if "lab" in frames:
            out["lab"]["false_alarm_rate_by_family"] = family_false_alarms(
                found["lab"], lab, threshold
            )
        return out

    fold = run_folds(lab, params) if "lab" in frames else None

    def held_out(budget: float) -> dict[str, float]:
        if fold is None:
            return {}
        return {"held_out": held_out_false_alarms(budgets(budget), found, frames, floor, fold)}

    budget = params["false_alarm_budget"]
    threshold = threshold_for(budgets(budget), found, frames, floor)
    sweep = {b: threshold_for(budgets(b), found, frames, floor) for b in BUDGET_SWEEP}
    meta = {
        "classes": [str(c) for c in pipeline.classes_],
        "features": list(schema.FEATURE_NAMES),
        "threshold": threshold,
        "normal_typical": typical_normal(pd.concat([train_frame, lab], ignore_index=True)),
        "false_alarm_budget": budget,
        "kdd_false_alarm_budget": budgets(budget)["kdd"],
        "validation": point(threshold) | held_out(budget),
        "validation_at_0_5": point(0.5),
        "budget_sweep": {
            str(b): {"threshold": t, **point(t), **held_out(b)} for b, t in sweep.items()
        },
    }
    log.info(
        "thresholds %s (false-alarm budgets %s, all categories together): validation %s",
        threshold,
        budgets(budget),
        meta["validation"],
    )
    return pipeline, meta
