"""Choosing the per-category alert thresholds on validation scores, within false-alarm budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from desy import schema
from desy.inference import Decisions, cut

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
        thresholds = _share_thresholds(scores, candidates, share, floor)
        fits = int(cut(scores, candidates, thresholds).sum())
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


def threshold_for(
    budgets: dict[str, float],
    found: dict[str, Decisions],
    frames: dict[str, pd.DataFrame],
    floor: float,
) -> dict[str, float]:
    """Per attack category, the lowest threshold keeping every validation set's normal false
    alarms of that category within the set's budget."""
    per_set = []
    for name, budget in budgets.items():
        normal = frames[name]["is_attack"].to_numpy() == 0
        per_set.append(
            category_thresholds(
                found[name].attack_probability[normal], found[name].category[normal], budget, floor
            )
        )
    return {category: max(t[category] for t in per_set) for category in per_set[0]}


def subset(found: Decisions, mask: np.ndarray) -> Decisions:
    """The decisions of the records mask selects."""
    return Decisions(found.is_attack[mask], found.attack_probability[mask], found.category[mask])


def held_out_false_alarms(
    budgets: dict[str, float],
    found: dict[str, Decisions],
    frames: dict[str, pd.DataFrame],
    floor: float,
    fold: np.ndarray,
) -> dict[str, float]:
    """What the budget's thresholds give on runs they were not chosen on: for each fold, the
    thresholds chosen without its runs, applied to them. Choosing thresholds on the very scores
    they are measured on flatters them; this is the estimate to hold against a limit. Overall and
    per scenario family."""
    lab = frames["lab"]
    flagged = np.zeros(len(lab), dtype=bool)
    for k in np.unique(fold):
        held = fold == k
        chosen = threshold_for(
            budgets,
            {**found, "lab": subset(found["lab"], ~held)},
            {**frames, "lab": lab[~held]},
            floor,
        )
        flagged[held] = cut(
            found["lab"].attack_probability[held], found["lab"].category[held], chosen
        )
    normal = lab["is_attack"].to_numpy() == 0
    by_family = pd.Series(flagged[normal]).groupby(lab["family"].to_numpy()[normal]).mean()
    return {
        "false_alarm_rate": round(float(flagged[normal].mean()), 6),
        **{f"false_alarm_rate.{k}": round(float(v), 6) for k, v in by_family.items()},
    }
