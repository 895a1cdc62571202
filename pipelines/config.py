"""Paths and parameters shared by the pipeline stages."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"
ARTIFACTS = ROOT / "artifacts"
PREPARED = ARTIFACTS / "prepared"
MODEL_DIR = ARTIFACTS / "model"
REPORTS = ROOT / "reports"
PLOTS = REPORTS / "plots"
FIGURES = REPORTS / "figures"
DATA_DOCS = REPORTS / "data_docs"
METRICS_FILE = REPORTS / "metrics.json"
VALIDATION_FILE = REPORTS / "validation.json"
REGISTRY_FILE = REPORTS / "registry.json"

#: The lab's splits (whole scenario runs each) and the names of every prepared table.
LAB_SPLITS = ("lab_train", "lab_validation", "lab_test")
SPLITS = ("train", "validation", "kddtest_plus", "kddtest_21", *LAB_SPLITS)
#: Test sets, by the names metrics.json uses, and the prepared table each reads.
TEST_SETS = {"kddtest_plus": "kddtest_plus", "kddtest_21": "kddtest_21", "lab": "lab_test"}


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml."""
    with path.open() as fh:
        return yaml.safe_load(fh)


def data_dir(params: dict[str, Any]) -> Path:
    """Directory holding the raw NSL-KDD files."""
    return ROOT / params["data"]["dir"]


def flow_tables(params: dict[str, Any]) -> list[Path]:
    """The lab's labelled table and the operators' own (every CSV in the site directory)."""
    site = ROOT / params["site"]["dir"]
    return [ROOT / params["lab"]["table"], *sorted(site.glob("*.csv"))]


def setup_logging() -> None:
    """INFO for DeSy's own loggers, WARNING for the libraries'."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("desy").setLevel(logging.INFO)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
