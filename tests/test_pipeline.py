"""The real pipeline on all of NSL-KDD: the accuracy bars and determinism."""

import pytest

from pipelines import config
from pipelines.evaluate import evaluate
from pipelines.prepare import load, prepare
from pipelines.train import train


@pytest.mark.slow
def test_full_pipeline_clears_the_bars_and_is_deterministic(tmp_path):
    params = config.load_params()
    counts = prepare(params, tmp_path)
    assert counts == {"train": 100778, "validation": 25195, "kddtest_plus": 22544, "kddtest_21": 11850}
    tables = {name: load(name, tmp_path) for name in config.SPLITS}
    runs = []
    for _ in range(2):
        pipeline, meta = train(tables["train"], tables["validation"], params["train"])
        metrics, _ = evaluate(pipeline, meta, {k: tables[k] for k in config.TEST_SETS})
        runs.append(metrics)
    assert runs[0] == runs[1]
    assert runs[0]["kddtest_plus"]["accuracy"] >= 0.82
    assert runs[0]["kddtest_21"]["accuracy"] >= 0.66
