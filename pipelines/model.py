"""The model: one scikit-learn Pipeline from raw records to category probabilities, its
decision threshold and its ONNX export."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from desy import schema


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


#: Added to every threshold so that it lies between the values tree-vote averages take.
OFF_GRID = 3.7e-6


def choose_threshold(normal_scores: np.ndarray, budget: float, floor: float = 0.0) -> float:
    """Lowest alert threshold (at least floor) whose false-alarm rate on these normal records
    stays within budget.

    Candidates lie midway between distinct observed scores (taken at 1e-6 resolution, so sums
    that differ only by rounding count as one), plus OFF_GRID: forest scores are averages of
    tree votes and fall on a fine grid that plain midpoints can hit, and a score sitting on the
    threshold may fall on either side in float32 ONNX and float64 sklearn.
    """
    scores = np.sort(np.round(np.asarray(normal_scores, dtype=np.float64), 6))
    distinct = np.unique(scores)
    top = max((distinct[-1] + 1.0) / 2, np.nextafter(distinct[-1], np.inf))
    above = np.append((distinct[:-1] + distinct[1:]) / 2, top) + OFF_GRID
    false_alarms = len(scores) - np.searchsorted(scores, distinct, side="right")
    allowed = np.flatnonzero(
        (false_alarms <= np.floor(budget * len(scores) + 1e-9)) & (above >= floor)
    )
    return float(above[allowed[0]]) if len(allowed) else float(top)


def category_thresholds(
    scores: np.ndarray, candidates: np.ndarray, budget: float, floor: float
) -> dict[str, float]:
    """Per attack category, the lowest threshold (at least floor) such that the alerts of all
    categories together on these normal records stay within budget of them.

    Every category gets the same share of the budget: the largest share (in whole records) whose
    total stays within it. A share is spent only by normal records whose candidate category it
    is, so a category that normal traffic rarely resembles gets a low threshold.
    """
    allowed = int(np.floor(budget * len(scores) + 1e-9))
    low, high = 0, allowed  # a larger share never lowers the total: bisect for the largest
    while low < high:
        share = (low + high + 1) // 2
        fits = _alerts(scores, candidates, _share_thresholds(scores, candidates, share, floor))
        low, high = (share, high) if fits <= allowed else (low, share - 1)
    return _share_thresholds(scores, candidates, low, floor)


def _share_thresholds(
    scores: np.ndarray, candidates: np.ndarray, share: int, floor: float
) -> dict[str, float]:
    """Per attack category, the lowest threshold letting at most `share` of these normal records
    alert with that category."""
    budget = share / max(len(scores), 1)
    return {
        category: choose_threshold(np.where(candidates == category, scores, 0.0), budget, floor)
        for category in schema.CATEGORIES[1:]
    }


def _alerts(scores: np.ndarray, candidates: np.ndarray, thresholds: dict[str, float]) -> int:
    """How many records these thresholds flag, each by its candidate category's threshold."""
    cut = np.asarray([thresholds.get(c, np.inf) for c in candidates], dtype=np.float64)
    return int((scores >= cut).sum())


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
