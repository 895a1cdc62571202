"""Stage 5: log the run to MLflow, register a version of desy-nids and gate the champion alias.

The sklearn pipeline is logged with signature and input example; its ONNX export and the
decision metadata are stored with the same logged model, after checking that ONNX and sklearn
agree on every KDDTest+ record. The alias moves only when the new version keeps KDDTest+
accuracy at or above register.min_kddtest_plus_accuracy and, against the champion, does not raise
the lab test's false-alarm rate nor lower its detection rate (beyond register.tolerance). The
champion is scored again on today's test sets (its ONNX export), since the lab table changes when
the lab is rerun: both versions are compared on the same connections.
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
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from desy import registry, schema
from desy.inference import OnnxModel, decide
from desy.registry import CHAMPION_ALIAS, EXPERIMENT_NAME, META_FILE, MODEL_NAME, ONNX_FILE
from pipelines import config
from pipelines.model import load_model
from pipelines.scoring import score
from pipelines.tables import load

log = logging.getLogger("desy.register")


class ParityError(RuntimeError):
    """The ONNX export does not decide like the sklearn pipeline."""


#: The metrics the gate reads, tagged on every registered version.
GATE_METRICS = ("lab.false_alarm_rate", "lab.detection_rate", "kddtest_plus.accuracy")


@dataclass
class GateDecision:
    """Outcome of the champion gate."""

    version: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None


def check_parity(
    pipeline: Pipeline, meta: dict[str, Any], onnx_dir: Path, frame: pd.DataFrame
) -> int:
    """Compare sklearn and ONNX on frame: predicted category and verdict must match on every row."""
    features = frame[list(schema.FEATURE_NAMES)]
    sk_proba = pipeline.predict_proba(features)
    onnx_proba = OnnxModel.from_dir(onnx_dir, META_FILE, ONNX_FILE).predict_proba(
        {c: features[c].to_numpy() for c in features}
    )
    classes = meta["classes"]
    label_mismatch = int((sk_proba.argmax(axis=1) != onnx_proba.argmax(axis=1)).sum())
    sk_verdict = decide(sk_proba, classes, meta["threshold"])
    onnx_verdict = decide(onnx_proba, classes, meta["threshold"])
    verdict_mismatch = int((sk_verdict.is_attack != onnx_verdict.is_attack).sum())
    if label_mismatch or verdict_mismatch:
        raise ParityError(
            f"ONNX disagrees with sklearn on {label_mismatch} labels and {verdict_mismatch} verdicts of {len(frame)}"
        )
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


def gate_reasons(
    new: dict[str, float], champion: dict[str, float] | None, rules: dict[str, float]
) -> list[str]:
    """Why the new version must not take champion (empty: it may)."""
    reasons = []
    floor = rules["min_kddtest_plus_accuracy"]
    if new["kddtest_plus.accuracy"] < floor:
        reasons.append(f"KDDTest+ accuracy {new['kddtest_plus.accuracy']:.4f} < {floor}")
    if champion:
        tolerance = rules["tolerance"]
        if new["lab.false_alarm_rate"] > champion["lab.false_alarm_rate"] + tolerance:
            reasons.append(
                f"lab false alarms {new['lab.false_alarm_rate']:.4f} > champion's {champion['lab.false_alarm_rate']:.4f}"
            )
        if new["lab.detection_rate"] < champion["lab.detection_rate"] - tolerance:
            reasons.append(
                f"lab detection {new['lab.detection_rate']:.4f} < champion's {champion['lab.detection_rate']:.4f}"
            )
    return reasons


def champion_gate_metrics(version: str, tests: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The gate metrics of a registered version on these test sets ("lab", "kddtest_plus")."""
    directory = Path(mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(version)))
    model = OnnxModel.from_dir(directory, META_FILE, ONNX_FILE)
    scores = {
        name: score(frame, model.classify({n: frame[n].tolist() for n in schema.FEATURE_NAMES}))
        for name, frame in tests.items()
    }
    return {name: metric_value(scores, name) for name in GATE_METRICS}


def gate(
    client: MlflowClient,
    version: str,
    new: dict[str, float],
    rules: dict[str, float],
    tests: dict[str, pd.DataFrame],
) -> GateDecision:
    """Move the champion alias to version if gate_reasons finds nothing against it, the champion
    scored on the same test sets."""
    champion = registry.champion(client)
    known = champion_gate_metrics(champion.version, tests) if champion is not None else None
    reasons = gate_reasons(new, known, rules)
    promoted = not reasons
    if not promoted:
        reason = "; ".join(reasons)
    elif champion is None:
        reason = "no champion yet"
    else:
        reason = f"keeps lab false alarms and detection of champion v{champion.version} (on the same test runs) and KDDTest+ accuracy"
    if promoted:
        registry.promote(client, version)
    return GateDecision(
        version=version,
        promoted=promoted,
        reason=reason,
        metrics=new,
        champion_version=champion.version if champion else None,
        champion_metrics=known,
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=config.ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _data_hash() -> str:
    dvc_file = config.ROOT / "data.dvc"
    return (
        yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"] if dvc_file.is_file() else "unknown"
    )


def _experiment_id() -> str:
    """The DeSy experiment, created with artifacts beside a SQLite store."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    location = registry.prepare_store(mlflow.get_tracking_uri())
    return mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)


def run_name(params: dict[str, Any], commit: str) -> str:
    """A readable run name: model, false-alarm budget, commit."""
    train = params["train"]
    return f"rf{train['n_estimators']}-lab{train['lab_weight']}-budget{train['false_alarm_budget']}-{commit[:7]}"


def log_datasets(datasets: dict[str, tuple[pd.DataFrame, str]]) -> None:
    """Log each table the run used (name -> (frame, context)) as an MLflow dataset input."""
    for name, (frame, context) in datasets.items():
        source = f"artifacts/prepared/{name}.parquet"
        mlflow.log_input(
            mlflow.data.from_pandas(frame, source=source, targets="category", name=name),
            context=context,
        )


def register(
    pipeline: Pipeline,
    meta: dict[str, Any],
    model_dir: Path,
    metrics: dict[str, Any],
    params: dict[str, Any],
    example: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
    artifacts: list[Path] = (),
    datasets: dict[str, tuple[pd.DataFrame, str]] | None = None,
) -> GateDecision:
    """Log a run with the model, register a version and apply the champion gate."""
    uri = registry.tracking_uri()
    mlflow.set_tracking_uri(uri)
    registry.prepare_store(uri)
    client = MlflowClient()
    new = {name: metric_value(metrics, name) for name in GATE_METRICS}
    commit = _git_commit()
    with mlflow.start_run(experiment_id=_experiment_id(), run_name=run_name(params, commit)) as run:
        mlflow.set_tags({"git_commit": commit, "dvc_data_md5": _data_hash()})
        mlflow.log_params(
            {f"{stage}.{k}": v for stage in ("prepare", "train") for k, v in params[stage].items()}
        )
        mlflow.log_params(
            {f"threshold.{category}": value for category, value in meta["threshold"].items()}
        )
        log_datasets(datasets or {})
        validation = {
            f"validation_{name}": value for name, value in flat_metrics(meta["validation"]).items()
        }
        mlflow.log_metrics(flat_metrics(metrics) | validation)
        for path in artifacts:
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path="reports")
        features = example[list(schema.FEATURE_NAMES)]
        info = mlflow.sklearn.log_model(
            sk_model=pipeline,
            name="model",
            signature=infer_signature(features, pipeline.predict_proba(features)),
            input_example=features.head(5),
            skops_trusted_types=["sklearn.tree._tree.Tree"],
            metadata={"threshold": meta["threshold"], "classes": meta["classes"]},
        )
        for name in (ONNX_FILE, META_FILE):
            client.log_model_artifact(info.model_id, str(model_dir / name))
        version = mlflow.register_model(info.model_uri, MODEL_NAME).version
        for name, value in new.items():
            client.set_model_version_tag(MODEL_NAME, version, f"metric.{name}", str(value))
        client.set_model_version_tag(
            MODEL_NAME, version, "threshold", json.dumps(meta["threshold"])
        )
        decision = gate(client, str(version), new, params["register"], tests)
        mlflow.set_tags(
            {
                "champion_gate": "promoted" if decision.promoted else "kept",
                "champion_gate_reason": decision.reason,
            }
        )
    verb = "takes" if decision.promoted else "does not take"
    log.info(
        "run %s registered %s v%s; it %s alias %r: %s",
        run.info.run_id,
        MODEL_NAME,
        version,
        verb,
        CHAMPION_ALIAS,
        decision.reason,
    )
    return decision


def main() -> None:
    config.setup_logging()
    params = config.load_params()
    pipeline, meta = load_model()
    kddtest_plus = load("kddtest_plus")
    check_parity(pipeline, meta, config.MODEL_DIR, kddtest_plus)
    metrics = json.loads(config.METRICS_FILE.read_text())
    figures = sorted(config.FIGURES.glob("*.png"))
    contexts = {
        "train": "training",
        "lab_train": "training",
        "validation": "validation",
        "lab_validation": "validation",
        "kddtest_plus": "test",
        "kddtest_21": "test",
        "lab_test": "test",
    }
    datasets = {
        name: (kddtest_plus if name == "kddtest_plus" else load(name), context)
        for name, context in contexts.items()
    }
    tests = {"lab": datasets["lab_test"][0], "kddtest_plus": kddtest_plus}
    decision = register(
        pipeline,
        meta,
        config.MODEL_DIR,
        metrics,
        params,
        kddtest_plus.sample(5, random_state=0),
        tests,
        [*figures, config.METRICS_FILE, config.VALIDATION_FILE, config.MODEL_DIR / META_FILE],
        datasets,
    )
    config.REGISTRY_FILE.write_text(json.dumps(asdict(decision), indent=2) + "\n")


if __name__ == "__main__":
    main()
