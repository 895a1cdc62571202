"""A real `desy serve` with an alert store: /classify answers once the store committed the batch,
a batch named by X-Desy-Batch is stored once however often it is sent, a store that cannot be
written is said (a 503 with Retry-After, /readyz, the logs) and what it lost is counted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from alerts.database import engine_for
from alerts.tables import alerts, batches, verdict_counts
from desy.records import BATCH_HEADER, record
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS, ROOT, free_port
from tests.serving.conftest import start_server, stop_server, wait_ready


@pytest.fixture(scope="module")
def flows() -> list[dict]:
    rows = [tuple(row.values()) for row in extract_file(PCAPS / "synflood_spoofed.pcap")[0]]
    return [record(row, "agent-1") for row in rows[:300]]


def serve_logged(uri: str, port: int, log: Path, *extra: str) -> subprocess.Popen:
    """`desy serve` (one worker, no token) in a session of its own, its output (BentoML logs on
    standard output) in the file log."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    env.pop("DESY_API_TOKEN", None)
    argv = [sys.executable, "-m", "commands", "serve", "--port", str(port), "--workers", "1"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*argv, *extra],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def count_rows(url: str, table=alerts) -> int:
    """The rows of a table in the store at url."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(table))
    finally:
        engine.dispose()


def serve_storing_all(uri: str, store: str, workers: int) -> tuple[subprocess.Popen, str]:
    """A ready server of the model store at uri recording every verdict in store; its URL."""
    port = free_port()
    proc = start_server(
        uri, None, port, "--workers", str(workers), "--store-url", store, "--store-all"
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def _post(url: str, flows: list[dict], batch: str | None = None) -> httpx.Response:
    headers = {BATCH_HEADER: batch} if batch is not None else {}
    return httpx.post(f"{url}/classify", json={"flows": flows}, headers=headers, timeout=60)


def test_an_answer_means_stored_and_a_batch_sent_again_is_stored_once(model_store, tmp_path, flows):
    store = f"sqlite:///{tmp_path}/alerts.db"
    proc, url = serve_storing_all(model_store[0], store, workers=2)
    try:
        for bad in ("", "has space", "x" * 65, "semi;colon"):
            answer = _post(url, flows[:5], bad)
            assert answer.status_code == 400 and BATCH_HEADER in answer.json()["error"]
        assert count_rows(store) == 0
        for sent in range(1, 4):  # the same batch three times, on either worker
            assert _post(url, flows[:100], "agent-1.b-1").status_code == 200
            assert count_rows(store) == 100  # stored before the answer, and once
        assert _post(url, flows[100:300]).status_code == 200  # no id: stored as it comes
        assert _post(url, flows[100:300]).status_code == 200
        assert count_rows(store) == 500 and count_rows(store, batches) == 1
    finally:
        stop_server(proc)
    engine = engine_for(store)
    with engine.connect() as connection:
        assert connection.scalar(select(func.sum(verdict_counts.c.flows))) == 500


def test_a_locked_store_gets_a_503_and_the_batch_resent_is_stored_once(
    model_store, tmp_path, flows, monkeypatch
):
    """While another process holds SQLite's write lock, the answer is a 503 with Retry-After;
    the batch stays queued and is written when the lock goes, and the agent's resend of it
    (same batch id) is not stored again."""
    monkeypatch.setenv("DESY_STORE_WAIT_SECONDS", "1")
    store = f"sqlite:///{tmp_path}/alerts.db"
    proc, url = serve_storing_all(model_store[0], store, workers=1)
    try:
        assert _post(url, flows[:10], "warm-up").status_code == 200
        holder = sqlite3.connect(tmp_path / "alerts.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            answer = _post(url, flows[10:60], "locked-1")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"].isdigit() and "queued" in answer.json()["error"]
        deadline = time.monotonic() + 120
        while (answer := _post(url, flows[10:60], "locked-1")).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(1)
        assert count_rows(store) == 60
    finally:
        stop_server(proc)


def test_an_unreachable_store_is_not_ready_refuses_with_503_and_counts_what_it_lost(
    model_store, tmp_path, flows, monkeypatch
):
    uri, _ = model_store
    monkeypatch.setenv("DESY_STORE_WAIT_SECONDS", "1")
    down = "postgresql://postgres@/postgres?host=" + str(tmp_path / "no-server-here")
    port = free_port()
    proc = serve_logged(uri, port, tmp_path / "server.log", "--store-url", down)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
            except httpx.TransportError:
                ready = None
            if ready is not None and "alert store unreachable" in ready.text:
                break
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 503, ready and ready.text
        answer = _post(url, flows[:40], "lost-1")
        assert answer.status_code == 503 and "alert store" in answer.json()["error"]
        assert answer.headers["retry-after"].isdigit()
    finally:
        stop_server(proc)
    log = (tmp_path / "server.log").read_text()
    assert "alert store unreachable (preparing its schema)" in log
    lost = [line for line in log.splitlines() if "could not be written to the alert store" in line]
    assert len(lost) == 1 and "40 verdicts" in lost[0], log[-3000:]
    assert "[SQL" not in log and "[parameters" not in log
