"""The Great Expectations suite on real NSL-KDD files and on corrupted copies of one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from desy import schema
from pipelines.dataset import MissingDataError, read_raw
from pipelines.validate import validate_files
from tests.conftest import DATA

SUBSET = "KDDTrain+_20Percent.txt"
ROWS = {SUBSET: 25192}


def corrupt(tmp_path: Path, edit) -> Path:
    """A copy of the 20 % subset with edit(frame) applied, written as raw headerless CSV."""
    frame = pd.read_csv(DATA / SUBSET, header=None, names=list(schema.RAW_COLUMNS))
    frame = edit(frame)
    path = tmp_path / SUBSET
    frame.to_csv(path, header=False, index=False)
    return path


def failures(tmp_path: Path, path: Path) -> list[str]:
    (report,) = validate_files([path], ROWS, tmp_path / "docs")
    return [str(f) for f in report.failures]


def test_real_file_passes_and_writes_data_docs(tmp_path):
    (report,) = validate_files([DATA / SUBSET], ROWS, tmp_path / "docs")
    assert report.failures == []
    assert report.rows == 25192 and report.expectations > 100
    assert (tmp_path / "docs" / "index.html").is_file()


def test_negative_src_bytes_is_named(tmp_path):
    def edit(frame):
        frame.loc[3, "src_bytes"] = -5
        return frame

    found = failures(tmp_path, corrupt(tmp_path, edit))
    assert any("'src_bytes'" in f and "between" in f and "-5" in f for f in found), found
    assert all(SUBSET in f for f in found)


def test_unknown_flag_is_named(tmp_path):
    def edit(frame):
        frame.loc[10, "flag"] = "XYZ"
        return frame

    found = failures(tmp_path, corrupt(tmp_path, edit))
    assert any("'flag'" in f and "in_set" in f and "XYZ" in f for f in found), found


def test_missing_column_is_named(tmp_path):
    found = failures(tmp_path, corrupt(tmp_path, lambda frame: frame.drop(columns=["flag"])))
    assert any("flag" in f and "columns" in f for f in found), found


def test_rate_out_of_range_and_wrong_row_count(tmp_path):
    def edit(frame):
        frame.loc[0, "serror_rate"] = 1.5
        return frame.iloc[:-1]

    found = failures(tmp_path, corrupt(tmp_path, edit))
    assert any("'serror_rate'" in f for f in found), found
    assert any("row_count" in f for f in found), found


def test_unknown_label_is_named(tmp_path):
    def edit(frame):
        frame.loc[1, "label"] = "martian"
        return frame

    found = failures(tmp_path, corrupt(tmp_path, edit))
    assert any("'label'" in f and "martian" in f for f in found), found


def test_missing_file_explains_where_data_comes_from(tmp_path):
    with pytest.raises(MissingDataError) as err:
        read_raw(tmp_path / "KDDTrain+.txt")
    message = str(err.value)
    assert (
        "dvc pull" in message
        and "1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95" in message
    )
