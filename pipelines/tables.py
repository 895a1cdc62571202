"""The prepared tables: one Parquet file each in artifacts/prepared/, written by the prepare stage
and read by the later ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines import config


def save(name: str, table: pd.DataFrame, directory: Path = config.PREPARED) -> None:
    """Write one prepared table."""
    directory.mkdir(parents=True, exist_ok=True)
    table.to_parquet(directory / f"{name}.parquet", index=False)


def load(name: str, directory: Path = config.PREPARED) -> pd.DataFrame:
    """Read one prepared table."""
    return pd.read_parquet(directory / f"{name}.parquet")
