"""A real `desy serve` process on a free port, serving a small model from a temporary MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines import config
from pipelines.evaluate import evaluate
from pipelines.register import register
from tests.conftest import ROOT, SMALL_TRAIN_PARAMS, free_port

TOKEN = "test-token-0123456789"
CHROMIUM = Path("/usr/bin/chromium")


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
        ],
    )


def register_small_model(uri: str, small_model, small_tables) -> str:
    """Register the small model in the MLflow store or server at uri (it takes champion: the
    gate's floors are off); its version."""
    pipeline, meta, model_dir = small_model
    tests = {name: small_tables[table] for name, table in config.TEST_SETS.items()}
    metrics, _ = evaluate(pipeline, meta, tests)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        params = {
            "prepare": {},
            "train": SMALL_TRAIN_PARAMS,
            "register": {"min_kddtest_plus_accuracy": 0, "tolerance": 0},
        }
        decision = register(
            pipeline,
            meta,
            model_dir,
            metrics,
            params,
            small_tables["kddtest_plus"].head(5),
            {"lab": small_tables["lab_test"], "kddtest_plus": small_tables["kddtest_plus"]},
        )
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    assert decision.promoted, decision.reason
    return decision.version


@pytest.fixture(scope="session")
def model_store(small_model, small_tables, tmp_path_factory):
    """A temporary MLflow store whose desy-nids champion is the small model."""
    store = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{store}/mlflow.db"
    return uri, register_small_model(uri, small_model, small_tables)


def start_server(uri: str, token: str | None, port: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    env.pop("DESY_API_TOKEN", None)
    args = [sys.executable, "-m", "commands", "serve", "--port", str(port), *extra]
    if token:
        args += ["--token", token]
    background = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
        "start_new_session": True,
    }
    return subprocess.Popen(args, cwd=ROOT, env=env, **background)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll /readyz until it answers 200; fail the test with the server's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).is_success:
                return
        time.sleep(0.3)
    stderr = proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "(still running)"
    pytest.fail(
        f"server at {url} not ready after {timeout:.0f} s, exit code {proc.poll()}:\n{stderr}"
    )


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def server(model_store):
    """(base URL, served version) of a token-protected server."""
    uri, version = model_store
    port = free_port()
    proc = start_server(uri, TOKEN, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, version
    finally:
        stop_server(proc)
