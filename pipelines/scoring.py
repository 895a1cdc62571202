"""Metrics of the model's decisions on a labelled table."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn import metrics as skm

from desy import schema
from desy.inference import Decisions


def score(frame: pd.DataFrame, result: Decisions) -> dict[str, Any]:
    """Binary attack-vs-normal metrics, ROC-AUC and per-category recall.

    recall_by_category: for attack categories the share of records flagged as attacks (whatever
    category was guessed); for normal the share left unflagged.
    """
    truth = frame["is_attack"].to_numpy()
    flagged = result.is_attack.astype(int)
    right_category = result.category == frame["category"].to_numpy()
    by_category = {}
    for category in schema.CATEGORIES:
        mask = (frame["category"] == category).to_numpy()
        if mask.any():
            hits = flagged[mask] == (0 if category == "normal" else 1)
            by_category[category] = round(float(hits.mean()), 6)
    return {
        "rows": len(frame),
        "accuracy": round(float(skm.accuracy_score(truth, flagged)), 6),
        "precision": round(float(skm.precision_score(truth, flagged, zero_division=0)), 6),
        "recall": round(float(skm.recall_score(truth, flagged, zero_division=0)), 6),
        "f1": round(float(skm.f1_score(truth, flagged, zero_division=0)), 6),
        "roc_auc": round(float(skm.roc_auc_score(truth, result.attack_probability)), 6),
        "false_alarm_rate": round(float(flagged[truth == 0].mean()), 6),
        "detection_rate": round(float(flagged[truth == 1].mean()), 6),
        "category_accuracy": round(float(right_category.mean()), 6),
        "attack_category_accuracy": round(float(right_category[truth == 1].mean()), 6),
        "recall_by_category": by_category,
    }


def by_family(frame: pd.DataFrame, result: Decisions) -> dict[str, dict[str, float]]:
    """Per scenario family (lab tables): false alarms on its normal connections, detection and
    right category on its attack connections."""
    out = {}
    for family in sorted(frame["family"].unique()):
        mask = (frame["family"] == family).to_numpy()
        truth = frame["is_attack"].to_numpy()[mask]
        flagged = result.is_attack[mask]
        right = (result.category == frame["category"].to_numpy())[mask]
        entry = {"connections": int(mask.sum())}
        if (truth == 0).any():
            entry["false_alarm_rate"] = round(float(flagged[truth == 0].mean()), 6)
        if (truth == 1).any():
            entry["detection_rate"] = round(float(flagged[truth == 1].mean()), 6)
            entry["category_accuracy"] = round(float(right[truth == 1].mean()), 6)
        out[family] = entry
    return out
