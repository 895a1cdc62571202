"""Stage 2: typed, deterministic tables for train/validation (split of KDDTrain+), KDDTest+, KDDTest-21."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from desy import schema
from pipelines import config
from pipelines.dataset import MissingDataError, read_raw, typed

log = logging.getLogger("desy.prepare")


def labelled(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed features plus label, category, is_attack and difficulty columns."""
    frame = typed(raw)
    frame["label"] = raw[schema.LABEL].astype(str)
    frame["category"] = frame["label"].map(schema.category_of)
    frame["is_attack"] = (frame["category"] != "normal").astype("int64")
    frame["difficulty"] = raw[schema.DIFFICULTY].astype("int64")
    return frame


def split_train(frame: pd.DataFrame, validation_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified (by label category) split of KDDTrain+ into train and validation."""
    train, validation = train_test_split(
        frame, test_size=validation_size, random_state=seed, stratify=frame["category"]
    )
    return train.sort_index().reset_index(drop=True), validation.sort_index().reset_index(drop=True)


def prepare(params: dict, out_dir: Path) -> dict[str, int]:
    """Write the four prepared tables as Parquet; returns their row counts."""
    files = params["data"]["files"]
    source = config.data_dir(params)
    full_train = labelled(read_raw(source / files["train"]))
    train, validation = split_train(full_train, params["prepare"]["validation_size"], params["prepare"]["seed"])
    tables = {
        "train": train,
        "validation": validation,
        "kddtest_plus": labelled(read_raw(source / files["kddtest_plus"])),
        "kddtest_21": labelled(read_raw(source / files["kddtest_21"])),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
        log.info("%s: %d rows", name, len(table))
    return {name: len(table) for name, table in tables.items()}


def load(name: str, directory: Path = config.PREPARED) -> pd.DataFrame:
    """Read one prepared table."""
    return pd.read_parquet(directory / f"{name}.parquet")


def main() -> None:
    config.setup_logging()
    try:
        prepare(config.load_params(), config.PREPARED)
    except MissingDataError as err:
        sys.exit(str(err))


if __name__ == "__main__":
    main()
