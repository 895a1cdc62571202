"""Stage 4: report the model on KDDTest+, KDDTest-21 and the lab's test runs (never used for tuning).

Writes reports/metrics.json, DVC plot data under reports/plots/ and PNG figures under
reports/figures/ (also logged to MLflow by the register stage).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from desy import schema
from desy.inference import Decisions, decide
from pipelines import config
from pipelines.model import load_model
from pipelines.scoring import by_family, score
from pipelines.tables import load

log = logging.getLogger("desy.evaluate")


def verdicts(pipeline: Pipeline, meta: dict[str, Any], frame: pd.DataFrame) -> Decisions:
    """The model's decisions on a prepared table."""
    proba = pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)])
    return decide(proba, meta["classes"], meta["threshold"])


def evaluate(
    pipeline: Pipeline, meta: dict[str, Any], tables: dict[str, pd.DataFrame]
) -> tuple[dict[str, Any], dict[str, Decisions]]:
    """Metrics at the chosen thresholds, plus accuracy at 0.5 to show what they buy."""
    metrics: dict[str, Any] = {}
    results: dict[str, Decisions] = {}
    for name, frame in tables.items():
        results[name] = verdicts(pipeline, meta, frame)
        metrics[name] = score(frame, results[name])
        if "family" in frame:
            metrics[name]["by_family"] = by_family(frame, results[name])
        default = verdicts(pipeline, meta | {"threshold": 0.5}, frame)
        metrics[name]["at_threshold_0_5"] = {
            key: score(frame, default)[key] for key in ("accuracy", "recall", "false_alarm_rate")
        }
        log.info(
            "%s: accuracy %.4f f1 %.4f (at 0.5: accuracy %.4f)",
            name,
            metrics[name]["accuracy"],
            metrics[name]["f1"],
            metrics[name]["at_threshold_0_5"]["accuracy"],
        )
    metrics["threshold"] = meta["threshold"]
    return metrics, results


def budget_table(
    pipeline: Pipeline, meta: dict[str, Any], tables: dict[str, pd.DataFrame]
) -> list[dict[str, Any]]:
    """For each budget of the training sweep: its threshold (chosen on validation) and what it
    gives on every test set (false alarms, detection, accuracy, attack category accuracy)."""
    rows = []
    probabilities = {
        name: pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)])
        for name, frame in tables.items()
    }
    for budget, point in meta["budget_sweep"].items():
        threshold = point["threshold"]
        row: dict[str, Any] = {
            "budget": float(budget),
            "threshold": {c: round(t, 4) for c, t in threshold.items()},
        }
        for name, frame in tables.items():
            metrics = score(frame, decide(probabilities[name], meta["classes"], threshold))
            for key in (
                "false_alarm_rate",
                "detection_rate",
                "accuracy",
                "attack_category_accuracy",
            ):
                row[f"{name}.{key}"] = metrics[key]
        rows.append(row)
    return rows


def write_plots(
    pipeline: Pipeline,
    tables: dict[str, pd.DataFrame],
    results: dict[str, Decisions],
    plots: Path,
    figures: Path,
) -> None:
    """Confusion matrices, ROC curves and feature importances as DVC data and PNGs."""
    plots.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        result = results[name]
        pd.DataFrame({"actual": frame["category"], "predicted": result.category}).to_csv(
            plots / f"confusion_{name}.csv", index=False
        )
        fpr, tpr, _ = skm.roc_curve(frame["is_attack"], result.attack_probability)
        pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6).to_csv(
            plots / f"roc_{name}.csv", index=False
        )
        _confusion_png(frame["category"], result.category, figures / f"confusion_{name}.png", name)
        _roc_png(fpr, tpr, figures / f"roc_{name}.png", name)
    importances = _importances(pipeline)
    importances.to_csv(plots / "importances.csv", index=False)
    _importances_png(importances, figures / "importances.png")


def _importances(pipeline: Pipeline) -> pd.DataFrame:
    """Forest importances summed back onto the 41 input features."""
    names = pipeline.named_steps["encode"].get_feature_names_out()
    raw = pipeline.named_steps["forest"].feature_importances_
    totals = dict.fromkeys(schema.FEATURE_NAMES, 0.0)
    for encoded, value in zip(names, raw):
        column = encoded.split("__", 1)[1]
        feature = (
            next(f for f in schema.CATEGORICAL_FEATURES if column.startswith(f + "_"))
            if encoded.startswith("categorical__")
            else column
        )
        totals[feature] += float(value)
    frame = pd.DataFrame({"feature": list(totals), "importance": list(totals.values())})
    return frame.sort_values("importance", ascending=False).round(6).reset_index(drop=True)


def _confusion_png(actual: pd.Series, predicted: np.ndarray, path: Path, title: str) -> None:
    matrix = skm.confusion_matrix(actual, predicted, labels=list(schema.CATEGORIES))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    skm.ConfusionMatrixDisplay(matrix, display_labels=list(schema.CATEGORIES)).plot(
        ax=ax, colorbar=False, values_format="d"
    )
    ax.set_title(f"Confusion matrix, {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _roc_png(fpr: np.ndarray, tpr: np.ndarray, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {skm.auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false-alarm rate", ylabel="detection rate", title=f"ROC, {title}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _importances_png(importances: pd.DataFrame, path: Path) -> None:
    top = importances.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh(top["feature"], top["importance"])
    ax.set(xlabel="importance (mean decrease in impurity)", title="Top 20 features")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    config.setup_logging()
    pipeline, meta = load_model()
    tables = {name: load(table) for name, table in config.TEST_SETS.items()}
    metrics, results = evaluate(pipeline, meta, tables)
    config.METRICS_FILE.parent.mkdir(parents=True, exist_ok=True)
    config.METRICS_FILE.write_text(json.dumps(metrics, indent=2) + "\n")
    (config.REPORTS / "budgets.json").write_text(
        json.dumps(budget_table(pipeline, meta, tables), indent=1) + "\n"
    )
    write_plots(pipeline, tables, results, config.PLOTS, config.FIGURES)


if __name__ == "__main__":
    main()
