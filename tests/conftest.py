"""Shared fixtures: the real NSL-KDD files, the lab's flows and a small model trained on the 20 %
subset and the lab's training runs."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "nsl-kdd"
SHARED = ROOT.parent / "shared"
PCAPS = SHARED / "pcaps"
LAB_TABLE = ROOT / "lab" / "flows.csv"


def run(argv: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command from the project's directory with its text output captured; the caller
    checks the exit code."""
    argv = [str(arg) for arg in argv]
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


SMALL_TRAIN_PARAMS = {
    "n_estimators": 30,
    "max_depth": None,
    "min_samples_leaf": 1,
    "max_features": "sqrt",
    "class_weight": "balanced_subsample",
    "seed": 7,
    "lab_weight": 3,
    "false_alarm_budget": 0.01,
    "kdd_false_alarm_budget": 0.01,
    "min_threshold": 0.05,
    "threshold_folds": 3,
}


@pytest.fixture(scope="session")
def small_tables():
    """Prepared tables from KDDTrain+_20Percent (train/validation), the two test sets and the
    lab's runs (lab_train/lab_validation/lab_test)."""
    from pipelines.dataset import read_raw
    from pipelines.prepare import flows, labelled, split_runs, split_train

    train, validation = split_train(labelled(read_raw(DATA / "KDDTrain+_20Percent.txt")), 0.2, 7)
    return {
        "train": train,
        "validation": validation,
        "kddtest_plus": labelled(read_raw(DATA / "KDDTest+.txt")),
        "kddtest_21": labelled(read_raw(DATA / "KDDTest-21.txt")),
        **split_runs(flows([LAB_TABLE]), 0.2, 0.2, 7),
    }


@pytest.fixture(scope="session")
def small_model(small_tables, tmp_path_factory):
    """(pipeline, meta, model_dir) of a 30-tree forest trained on the 20 % subset, saved with its ONNX export."""
    from pipelines.model import save
    from pipelines.training import train

    tables = small_tables
    pipeline, meta = train(
        tables["train"],
        tables["validation"],
        SMALL_TRAIN_PARAMS,
        tables["lab_train"],
        tables["lab_validation"],
    )
    model_dir = tmp_path_factory.mktemp("model")
    save(pipeline, meta, model_dir)
    return pipeline, meta, model_dir


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL (Debian's package) in a temporary cluster, for the session."""
    from benchmarks.postgres import NoPostgres, temporary_postgres

    try:
        with temporary_postgres() as url:
            yield url
    except NoPostgres as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session", autouse=True)
def _private_data_home(tmp_path_factory):
    """Servers started by the tests keep their default alert store in a temporary directory, not
    in the user's ~/.local/share."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/alerts.db"
    return new_database(request.getfixturevalue("postgres_url"))


def new_database(server: str) -> str:
    """A new, empty database on the PostgreSQL of server (a URL to its `postgres` database)."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.replace("/postgres?", f"/{name}?")
