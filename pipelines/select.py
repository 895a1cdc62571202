"""Compare values of one training parameter on validation data only (never a test set).

`python -m pipelines.select lab_weight 1 3 10` trains one model per value and prints its
per-category thresholds (the false-alarm budgets of params.yaml) and what they give on the
validation data: KDDTrain+'s validation split and the lab runs' out-of-fold scores, overall and
per scenario family.
"""

from __future__ import annotations

import sys

import yaml

from pipelines import config
from pipelines.tables import load
from pipelines.training import train


def compare(parameter: str, values: list[str]) -> None:
    params = config.load_params()["train"]
    tables = {name: load(name) for name in ("train", "validation", "lab_train", "lab_validation")}
    for value in values:
        _, meta = train(
            tables["train"],
            tables["validation"],
            params | {parameter: yaml.safe_load(value)},
            tables["lab_train"],
            tables["lab_validation"],
        )
        kdd, lab = meta["validation"]["kdd"], meta["validation"]["lab"]
        row = {
            parameter: value,
            **{f"threshold.{c}": round(t, 3) for c, t in meta["threshold"].items()},
            "kdd.false_alarm_rate": kdd["false_alarm_rate"],
            "kdd.detection_rate": kdd["detection_rate"],
            "lab.false_alarm_rate": lab["false_alarm_rate"],
            "lab.held_out_false_alarm_rate": meta["validation"]["held_out"]["false_alarm_rate"],
            "lab.detection_rate": lab["detection_rate"],
            **{
                f"lab.{family}.false_alarm_rate": rate
                for family, rate in lab["false_alarm_rate_by_family"].items()
            },
        }
        print(
            "  ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in row.items()),
            flush=True,
        )


def main() -> None:
    config.setup_logging()
    if len(sys.argv) < 3:
        sys.exit("usage: python -m pipelines.select <train parameter> <value> [<value> ...]")
    compare(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
