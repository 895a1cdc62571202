"""Reading the raw NSL-KDD files (headerless CSV, 43 columns) into typed frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from desy import schema

DATA_HELP = """NSL-KDD is not in {dir}.
DeSy expects the four NSL-KDD files from the Canadian Institute for Cybersecurity (UNB,
https://www.unb.ca/cic/datasets/nsl.html) in data/nsl-kdd/:
  1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95  KDDTrain+.txt
  fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84  KDDTest+.txt
  746993ac9e25868827cacf09eab450050a2a1056e1ce48a1ad39f5dc801d531d  KDDTest-21.txt
  7ea86479faab5ca2190b7f18b4982fb058ce5bf2b46e0e1017d0d9ef90f9c16e  KDDTrain+_20Percent.txt
Get them with `dvc pull` from the default remote `nsl-kdd` (../shared/dvc-remote), or point DVC
at your own copy: `dvc remote add -d -f nsl-kdd <url>` then `dvc pull`; or download the files,
check their SHA-256 (`sha256sum data/nsl-kdd/*.txt`) and run `dvc add data`."""


class MissingDataError(FileNotFoundError):
    """The raw dataset is not where the pipeline expects it."""


def require(path: Path) -> Path:
    """Return path, or raise MissingDataError explaining how to obtain NSL-KDD."""
    if not path.is_file():
        raise MissingDataError(DATA_HELP.format(dir=path.parent))
    return path


def read_raw(path: Path) -> pd.DataFrame:
    """Read one raw file as strings-and-numbers, naming its columns.

    A file whose width is not 43 gets the names that fit its values best, so that a dropped
    column shows up as that column missing rather than as every later column being wrong.
    """
    frame = pd.read_csv(require(path), header=None, low_memory=False)
    frame.columns = _column_names(frame)
    return frame


def _column_names(frame: pd.DataFrame) -> list[str]:
    width = frame.shape[1]
    expected = list(schema.RAW_COLUMNS)
    if width == len(expected):
        return expected
    if width == len(expected) - 1:
        sample = frame.head(500)
        fits = [i for i in range(len(expected)) if _fits(sample, expected[:i] + expected[i + 1 :])]
        if fits:
            return expected[: fits[0]] + expected[fits[0] + 1 :]
    return expected[:width] + [f"extra_{i}" for i in range(width - len(expected))]


def _fits(sample: pd.DataFrame, names: list[str]) -> bool:
    """Whether every column of sample holds values plausible for the given names."""
    for position, name in enumerate(names):
        values = sample.iloc[:, position]
        if name in schema.CATEGORICAL:
            ok = values.isin(schema.CATEGORICAL[name]).all()
        elif name == schema.LABEL:
            ok = values.isin(schema.LABELS).all()
        elif name in schema.RATE_FEATURES:
            ok = pd.api.types.is_numeric_dtype(values) and values.between(0, 1).all()
        else:
            ok = pd.api.types.is_integer_dtype(values)
        if not ok:
            return False
    return True


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The 41 features with model dtypes: str categoricals, int64 counts, float64 rates."""
    out = pd.DataFrame(index=frame.index)
    for name, kind in schema.FEATURES:
        if kind == "cat":
            out[name] = frame[name].astype(str)
        elif kind == "rate":
            out[name] = frame[name].astype("float64")
        else:
            out[name] = frame[name].astype("int64")
    return out
