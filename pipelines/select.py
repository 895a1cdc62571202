"""Compare values of one training parameter on validation data only (never a test set).

`python -m pipelines.select lab_weight 1 3 10 30` trains one model per value on the prepared
tables and prints, at each model's own threshold (the false-alarm budgets of params.yaml), the
validation false alarms, detection and attack-category accuracy on the lab and on KDDTrain+,
and the lab's per scenario family.
"""

from __future__ import annotations

import sys

import yaml

from desy.inference import decide
from pipelines import config
from pipelines.evaluate import by_family
from pipelines.prepare import load
from pipelines.train import train

KEYS = ("false_alarm_rate", "detection_rate", "attack_category_accuracy")


def compare(parameter: str, values: list[str]) -> list[dict[str, float | str]]:
    params = config.load_params()["train"]
    tables = {name: load(name) for name in ("train", "validation", "lab_train", "lab_validation")}
    rows = []
    for value in values:
        pipeline, meta = train(tables["train"], tables["validation"], params | {parameter: yaml.safe_load(value)},
                               tables["lab_train"], tables["lab_validation"])
        row: dict[str, float | str] = {parameter: value, **{f"threshold.{c}": round(t, 3) for c, t in meta["threshold"].items()}}
        for name in ("validation", "lab_validation"):
            frame = tables[name]
            verdicts = decide(pipeline.predict_proba(frame[meta["features"]]), meta["classes"], meta["threshold"])
            attack = frame["is_attack"].to_numpy() == 1
            row[f"{name}.false_alarm_rate"] = round(float(verdicts.is_attack[~attack].mean()), 4)
            row[f"{name}.detection_rate"] = round(float(verdicts.is_attack[attack].mean()), 4)
            right = verdicts.category[attack] == frame["category"].to_numpy()[attack]
            row[f"{name}.attack_category_accuracy"] = round(float(right.mean()), 4)
        families = by_family(tables["lab_validation"], verdicts)
        row |= {f"{family}.{key}": round(value, 4) for family, entry in families.items()
                for key, value in entry.items() if key != "connections"}
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def main() -> None:
    config.setup_logging()
    if len(sys.argv) < 3:
        sys.exit("usage: python -m pipelines.select <train parameter> <value> [<value> ...]")
    compare(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
