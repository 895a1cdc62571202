"""Stage 2: typed, deterministic tables.

NSL-KDD: train/validation (a stratified split of KDDTrain+), KDDTest+ and KDDTest-21. The lab's
labelled flows and the operators' own (site/*.csv): split by whole runs into lab_train,
lab_validation and lab_test, so that the lab test holds runs the model never saw.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from desy import records, schema
from pipelines import config
from pipelines.dataset import MissingDataError, read_raw, typed
from pipelines.tables import save

log = logging.getLogger("desy.prepare")


def labelled(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed features plus label, category, is_attack and difficulty columns."""
    frame = typed(raw)
    frame["label"] = raw[schema.LABEL].astype(str)
    frame["category"] = frame["label"].map(schema.category_of)
    frame["is_attack"] = (frame["category"] != "normal").astype("int64")
    frame["difficulty"] = raw[schema.DIFFICULTY].astype("int64")
    return frame


def split_train(
    frame: pd.DataFrame, validation_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified (by label category) split of KDDTrain+ into train and validation."""
    train, validation = train_test_split(
        frame, test_size=validation_size, random_state=seed, stratify=frame["category"]
    )
    return train.sort_index().reset_index(drop=True), validation.sort_index().reset_index(drop=True)


class FlowTableError(ValueError):
    """A labelled flow table (lab or site) that cannot be read as one."""


def flows(paths: list[Path]) -> pd.DataFrame:
    """Labelled flow tables (lab or site CSVs with desy.records.LABELLED_FIELDS' header), typed like NSL-KDD.

    A site file without scenario/family/run columns is one run of scenario "site".
    """
    frames = []
    for path in paths:
        raw = pd.read_csv(path, low_memory=False)
        missing = [c for c in (*schema.FEATURE_NAMES, schema.LABEL) if c not in raw.columns]
        if missing:
            raise FlowTableError(
                f"{path}: missing columns {missing}; see site/README.md for the format"
            )
        try:
            frame = labelled(raw.assign(**{schema.DIFFICULTY: raw.get(schema.DIFFICULTY, 0)}))
        except (KeyError, ValueError) as err:  # an unknown label, a value of the wrong type
            raise FlowTableError(f"{path}: {err}; see site/README.md for the format") from None
        frame["scenario"] = raw["scenario"].astype(str) if "scenario" in raw else "site"
        frame["family"] = raw["family"].astype(str) if "family" in raw else "site"
        frame["run"] = raw["run"].astype(str) if "run" in raw else path.name
        for name in records.ENDPOINT_FIELDS:
            if name in raw:
                frame[name] = raw[name]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def held_out(runs: int, share: float) -> int:
    """Runs of a scenario held out for one of test and validation: round(share × runs), at least
    one while two runs stay for the rest (a scenario with one run only trains)."""
    return max(1, round(share * runs)) if runs >= 3 else int(runs == 2 and share > 0)


def split_runs(
    frame: pd.DataFrame, validation_share: float, test_share: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Whole runs of each scenario to lab_test, lab_validation and lab_train (a seeded order).

    A scenario of two runs gives one to test and one to training; of one run, it only trains.
    """
    assignment: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for scenario in sorted(frame["scenario"].unique()):
        runs = sorted(frame.loc[frame["scenario"] == scenario, "run"].unique())
        runs = [runs[i] for i in rng.permutation(len(runs))]
        test = held_out(len(runs), test_share)
        validation = held_out(len(runs), validation_share) if len(runs) >= 3 else 0
        assignment.update(dict.fromkeys(runs[:test], "lab_test"))
        assignment.update(dict.fromkeys(runs[test : test + validation], "lab_validation"))
        assignment.update(dict.fromkeys(runs[test + validation :], "lab_train"))
    split = frame["run"].map(assignment)
    return {name: frame[split == name].reset_index(drop=True) for name in config.LAB_SPLITS}


def prepare(params: dict, out_dir: Path) -> dict[str, int]:
    """Write the prepared tables as Parquet; returns their row counts."""
    files = params["data"]["files"]
    source = config.data_dir(params)
    full_train = labelled(read_raw(source / files["train"]))
    train, validation = split_train(
        full_train, params["prepare"]["validation_size"], params["prepare"]["seed"]
    )
    lab_flows = flows(config.flow_tables(params))
    tables = {
        "train": train,
        "validation": validation,
        "kddtest_plus": labelled(read_raw(source / files["kddtest_plus"])),
        "kddtest_21": labelled(read_raw(source / files["kddtest_21"])),
        **split_runs(
            lab_flows,
            params["prepare"]["lab_validation_share"],
            params["prepare"]["lab_test_share"],
            params["prepare"]["seed"],
        ),
    }
    for name, table in tables.items():
        save(name, table, out_dir)
        log.info("%s: %d rows", name, len(table))
    return {name: len(table) for name, table in tables.items()}


def main() -> None:
    config.setup_logging()
    try:
        prepare(config.load_params(), config.PREPARED)
    except (MissingDataError, FlowTableError) as err:
        sys.exit(str(err))


if __name__ == "__main__":
    main()
