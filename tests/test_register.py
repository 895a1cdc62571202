"""Registration in a real (temporary) MLflow store and the champion gate."""

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from desy.registry import CHAMPION_ALIAS, META_FILE, MODEL_NAME, ONNX_FILE
from pipelines.evaluate import evaluate
from pipelines.model import save
from pipelines.register import gate_reasons, metric_value, register
from pipelines.training import train
from tests.conftest import SMALL_TRAIN_PARAMS

RULES = {"min_kddtest_plus_accuracy": 0.75, "tolerance": 0.0}
PARAMS = {
    "prepare": {"validation_size": 0.2, "seed": 7},
    "train": SMALL_TRAIN_PARAMS,
    "register": RULES,
}


def _register(model, tables, model_dir, params=PARAMS):
    pipeline, meta = model
    metrics, _ = evaluate(
        pipeline,
        meta,
        {
            "kddtest_plus": tables["kddtest_plus"],
            "kddtest_21": tables["kddtest_21"],
            "lab": tables["lab_test"],
        },
    )
    example = tables["kddtest_plus"].head(5)
    datasets = {"lab_train": (tables["lab_train"], "training")}
    tests = {"lab": tables["lab_test"], "kddtest_plus": tables["kddtest_plus"]}
    return register(
        pipeline, meta, model_dir, metrics, params, example, tests, datasets=datasets
    ), metrics


def test_weak_model_is_registered_but_does_not_take_champion(
    small_model, small_tables, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    pipeline, meta, model_dir = small_model
    first, strong_metrics = _register((pipeline, meta), small_tables, model_dir)
    assert first.promoted and first.reason == "no champion yet"

    # Trained without the lab: it misses lab attacks the champion catches.
    weak_params = SMALL_TRAIN_PARAMS | {"n_estimators": 3, "max_depth": 3}
    weak, weak_meta = train(small_tables["train"], small_tables["validation"], weak_params)
    weak_dir = tmp_path / "weak"
    save(weak, weak_meta, weak_dir)
    second, weak_metrics = _register(
        (weak, weak_meta),
        small_tables,
        weak_dir,
        PARAMS | {"register": RULES | {"min_kddtest_plus_accuracy": 0}},
    )
    assert weak_metrics["lab"]["detection_rate"] < strong_metrics["lab"]["detection_rate"]
    assert not second.promoted and "lab detection" in second.reason
    assert second.champion_metrics["lab.detection_rate"] == strong_metrics["lab"]["detection_rate"]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    versions = {str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    assert versions == {first.version, second.version}
    assert (
        str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version) == first.version
    )

    run = client.get_run(client.get_model_version(MODEL_NAME, second.version).run_id)
    assert run.data.tags["champion_gate"] == "kept"
    assert "git_commit" in run.data.tags and "dvc_data_md5" in run.data.tags
    assert run.data.metrics["kddtest_plus_f1"] == pytest.approx(weak_metrics["kddtest_plus"]["f1"])
    assert run.data.metrics["lab_false_alarm_rate"] == pytest.approx(
        weak_metrics["lab"]["false_alarm_rate"]
    )
    assert run.info.run_name.startswith("rf30-lab3-budget0.01-")
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["lab_train"]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    champion_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
    )
    meta_back = json.loads((tmp_path / champion_dir / META_FILE).read_text())
    assert meta_back["threshold"] == meta["threshold"]
    assert (tmp_path / champion_dir / ONNX_FILE).stat().st_size > 1000
    loaded = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    features = small_tables["kddtest_21"].head(100)[list(meta["features"])]
    assert (loaded.predict(features) == pipeline.predict(features)).all()


def test_the_champion_is_scored_again_on_todays_test_runs(
    small_model, small_tables, tmp_path, monkeypatch
):
    """A rerun lab gives other test runs: the champion's logged metrics would compare two
    different sets of connections. Re-registering the same model on a harder lab test split
    must still be judged equal to the champion, not worse."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    pipeline, meta, model_dir = small_model
    _, first_metrics = _register((pipeline, meta), small_tables, model_dir)
    lab = small_tables["lab_test"]
    harder = lab[lab["category"] != "normal"].head(50)  # only attacks: another false-alarm rate
    harder = small_tables | {
        "lab_test": pd.concat([lab[lab["category"] == "normal"].head(20), harder])
    }
    second, second_metrics = _register((pipeline, meta), harder, model_dir)
    assert second_metrics["lab"]["rows"] == 70 != first_metrics["lab"]["rows"]
    assert (
        second.champion_metrics["lab.false_alarm_rate"] == second_metrics["lab"]["false_alarm_rate"]
    )
    assert second.champion_metrics["lab.detection_rate"] == second_metrics["lab"]["detection_rate"]
    assert second.promoted


def test_unknown_promotion_metric_is_named():
    with pytest.raises(KeyError, match="kddtest_plus.nope"):
        metric_value({"kddtest_plus": {"f1": 0.9}}, "kddtest_plus.nope")


def test_gate_rules():
    champion = {
        "lab.false_alarm_rate": 0.01,
        "lab.detection_rate": 0.95,
        "kddtest_plus.accuracy": 0.85,
    }
    same = dict(champion)
    assert gate_reasons(same, champion, RULES) == []
    assert gate_reasons(same, None, RULES) == []
    louder = same | {"lab.false_alarm_rate": 0.011}
    assert gate_reasons(louder, champion, RULES) == ["lab false alarms 0.0110 > champion's 0.0100"]
    assert gate_reasons(louder, champion, RULES | {"tolerance": 0.002}) == []
    blinder = same | {"lab.detection_rate": 0.9}
    assert gate_reasons(blinder, champion, RULES) == ["lab detection 0.9000 < champion's 0.9500"]
    below_floor = same | {"kddtest_plus.accuracy": 0.81}
    assert gate_reasons(below_floor, None, RULES | {"min_kddtest_plus_accuracy": 0.82}) == [
        "KDDTest+ accuracy 0.8100 < 0.82"
    ]
