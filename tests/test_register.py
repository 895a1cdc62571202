"""Registration in a real (temporary) MLflow store and the champion gate."""

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from desy.registry import CHAMPION_ALIAS, META_FILE, MODEL_NAME, ONNX_FILE
from pipelines.evaluate import evaluate
from pipelines.register import metric_value, register
from pipelines.train import save, train
from tests.conftest import SMALL_TRAIN_PARAMS

PARAMS = {"prepare": {"validation_size": 0.2, "seed": 7}, "train": SMALL_TRAIN_PARAMS}


def _register(model, tables, model_dir):
    pipeline, meta = model
    metrics, _ = evaluate(pipeline, meta, {k: tables[k] for k in ("kddtest_plus", "kddtest_21")})
    example = tables["kddtest_plus"].head(5)
    return register(pipeline, meta, model_dir, metrics, PARAMS, example, "kddtest_plus.f1"), metrics


def test_weak_model_is_registered_but_does_not_take_champion(small_model, small_tables, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    pipeline, meta, model_dir = small_model
    first, strong_metrics = _register((pipeline, meta), small_tables, model_dir)
    assert first.promoted and first.reason == "no champion yet"

    weak_params = SMALL_TRAIN_PARAMS | {"n_estimators": 1, "max_depth": 1}
    weak, weak_meta = train(small_tables["train"].head(2000), small_tables["validation"], weak_params)
    weak_dir = tmp_path / "weak"
    save(weak, weak_meta, weak_dir)
    second, weak_metrics = _register((weak, weak_meta), small_tables, weak_dir)
    assert weak_metrics["kddtest_plus"]["f1"] < strong_metrics["kddtest_plus"]["f1"]
    assert not second.promoted and "does not beat" in second.reason

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    versions = {str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    assert versions == {first.version, second.version}
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version) == first.version

    run = client.get_run(client.get_model_version(MODEL_NAME, second.version).run_id)
    assert run.data.tags["champion_gate"] == "kept"
    assert "git_commit" in run.data.tags and "dvc_data_md5" in run.data.tags
    assert run.data.metrics["kddtest_plus_f1"] == pytest.approx(weak_metrics["kddtest_plus"]["f1"])

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    champion_dir = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    meta_back = json.loads((tmp_path / champion_dir / META_FILE).read_text())
    assert meta_back["threshold"] == meta["threshold"]
    assert (tmp_path / champion_dir / ONNX_FILE).stat().st_size > 1000
    loaded = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}")
    features = small_tables["kddtest_21"].head(100)[list(meta["features"])]
    assert (loaded.predict(features) == pipeline.predict(features)).all()


def test_unknown_promotion_metric_is_named():
    with pytest.raises(KeyError, match="kddtest_plus.nope"):
        metric_value({"kddtest_plus": {"f1": 0.9}}, "kddtest_plus.nope")
