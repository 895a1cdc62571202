"""Stage 3: fit the pipeline and pick the alert thresholds on validation data (pipelines.training).

Writes artifacts/model/ (joblib, ONNX, metadata) and reports/threshold.json.
"""

from __future__ import annotations

import json

from pipelines import config
from pipelines.model import save
from pipelines.tables import load
from pipelines.training import train


def main() -> None:
    config.setup_logging()
    params = config.load_params()
    pipeline, meta = train(
        load("train"),
        load("validation"),
        params["train"],
        load("lab_train"),
        load("lab_validation"),
    )
    save(pipeline, meta, config.MODEL_DIR)
    config.REPORTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "threshold": meta["threshold"],
        "budget": meta["false_alarm_budget"],
        "validation": meta["validation"],
    }
    (config.REPORTS / "threshold.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
