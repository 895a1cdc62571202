"""Stage 5: log the run to MLflow, register a version of desy-nids and gate the champion alias.

The sklearn pipeline is logged with signature and input example; its ONNX export and the
decision metadata are stored with the same logged model, after checking that ONNX and sklearn
agree on every KDDTest+ record. The alias moves only when the new version beats the champion on
register.promotion_metric.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from desy import schema
from desy.inference import OnnxModel, decide
from desy.registry import CHAMPION_ALIAS, EXPERIMENT_NAME, META_FILE, MODEL_NAME, ONNX_FILE, tracking_uri
from pipelines import config
from pipelines.prepare import load
from pipelines.train import load_model

log = logging.getLogger("desy.register")


class ParityError(RuntimeError):
    """The ONNX export does not decide like the sklearn pipeline."""


@dataclass
class GateDecision:
    """Outcome of the champion gate."""

    version: str
    promoted: bool
    reason: str
    metric: str
    value: float
    champion_version: str | None
    champion_value: float | None


def check_parity(pipeline: Pipeline, meta: dict[str, Any], onnx_dir: Path, frame: pd.DataFrame) -> int:
    """Compare sklearn and ONNX on frame: predicted category and verdict must match on every row."""
    features = frame[list(schema.FEATURE_NAMES)]
    sk_proba = pipeline.predict_proba(features)
    onnx_proba = OnnxModel.from_dir(onnx_dir, META_FILE, ONNX_FILE).predict_proba({c: features[c].to_numpy() for c in features})
    classes = meta["classes"]
    label_mismatch = int((sk_proba.argmax(axis=1) != onnx_proba.argmax(axis=1)).sum())
    sk_verdict = decide(sk_proba, classes, meta["threshold"])
    onnx_verdict = decide(onnx_proba, classes, meta["threshold"])
    verdict_mismatch = int((sk_verdict.is_attack != onnx_verdict.is_attack).sum())
    if label_mismatch or verdict_mismatch:
        raise ParityError(f"ONNX disagrees with sklearn on {label_mismatch} labels and {verdict_mismatch} verdicts of {len(frame)}")
    log.info("ONNX parity: labels and verdicts identical on all %d rows", len(frame))
    return len(frame)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json flattened to MLflow metric names (kddtest_plus.f1 -> kddtest_plus_f1)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, inner in flat_metrics(value).items():
                flat[f"{key}_{sub}"] = inner
        elif isinstance(value, (int, float)):
            flat[key] = float(value)
    return flat


def metric_value(metrics: dict[str, Any], dotted: str) -> float:
    """Look up "<set>.<metric>" in metrics.json, failing clearly on a bad name."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"promotion metric {dotted!r} not in reports/metrics.json")
        node = node[part]
    return float(node)


def gate(client: MlflowClient, version: str, metric: str, value: float) -> GateDecision:
    """Move the champion alias to version if it beats the current champion on metric."""
    tag = f"metric.{metric}"
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        champion = None
    if champion is None:
        promoted, reason, champion_value = True, "no champion yet", None
    else:
        champion_value = float(champion.tags.get(tag, "-inf"))
        promoted = value > champion_value
        relation = "beats" if promoted else "does not beat"
        reason = f"{metric} {value:.6f} {relation} champion v{champion.version}'s {champion_value:.6f}"
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    return GateDecision(
        version=version, promoted=promoted, reason=reason, metric=metric, value=value,
        champion_version=champion.version if champion else None, champion_value=champion_value,
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _data_hash() -> str:
    dvc_file = config.ROOT / "data.dvc"
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"] if dvc_file.is_file() else "unknown"


def _experiment_id() -> str:
    """The DeSy experiment, created with artifacts beside a SQLite store."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    uri = mlflow.get_tracking_uri()
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts").as_uri()
    return mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)


def register(pipeline: Pipeline, meta: dict[str, Any], model_dir: Path, metrics: dict[str, Any], params: dict[str, Any],
             example: pd.DataFrame, promotion_metric: str, artifacts: list[Path] = ()) -> GateDecision:
    """Log a run with the model, register a version and apply the champion gate."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient()
    value = metric_value(metrics, promotion_metric)
    with mlflow.start_run(experiment_id=_experiment_id()) as run:
        mlflow.set_tags({"git_commit": _git_commit(), "dvc_data_md5": _data_hash()})
        mlflow.log_params({f"{stage}.{k}": v for stage in ("prepare", "train") for k, v in params[stage].items()})
        mlflow.log_param("threshold", meta["threshold"])
        mlflow.log_metrics(flat_metrics(metrics) | {"validation_false_alarm_rate": meta["validation"]["false_alarm_rate"],
                                                    "validation_detection_rate": meta["validation"]["detection_rate"]})
        for path in artifacts:
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path="reports")
        features = example[list(schema.FEATURE_NAMES)]
        info = mlflow.sklearn.log_model(
            sk_model=pipeline, name="model", signature=infer_signature(features, pipeline.predict_proba(features)),
            input_example=features.head(5), skops_trusted_types=["sklearn.tree._tree.Tree"], metadata={"threshold": meta["threshold"], "classes": meta["classes"]},
        )
        for name in (ONNX_FILE, META_FILE):
            client.log_model_artifact(info.model_id, str(model_dir / name))
        version = mlflow.register_model(info.model_uri, MODEL_NAME).version
        client.set_model_version_tag(MODEL_NAME, version, f"metric.{promotion_metric}", str(value))
        client.set_model_version_tag(MODEL_NAME, version, "threshold", str(meta["threshold"]))
        decision = gate(client, str(version), promotion_metric, value)
        mlflow.set_tags({"champion_gate": "promoted" if decision.promoted else "kept", "champion_gate_reason": decision.reason})
    verb = "takes" if decision.promoted else "does not take"
    log.info("run %s registered %s v%s; it %s alias %r: %s", run.info.run_id, MODEL_NAME, version, verb, CHAMPION_ALIAS, decision.reason)
    return decision


def main() -> None:
    config.setup_logging()
    params = config.load_params()
    pipeline, meta = load_model()
    kddtest_plus = load("kddtest_plus")
    check_parity(pipeline, meta, config.MODEL_DIR, kddtest_plus)
    metrics = json.loads(config.METRICS_FILE.read_text())
    figures = sorted(config.FIGURES.glob("*.png"))
    decision = register(
        pipeline, meta, config.MODEL_DIR, metrics, params, kddtest_plus.sample(5, random_state=0),
        params["register"]["promotion_metric"], [*figures, config.METRICS_FILE, config.VALIDATION_FILE, config.MODEL_DIR / META_FILE],
    )
    config.REGISTRY_FILE.write_text(json.dumps(asdict(decision), indent=2) + "\n")


if __name__ == "__main__":
    main()
