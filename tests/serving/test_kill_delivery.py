"""The fault test of exactly-once delivery: a real `desy-agent run` replaying a capture to a real
`desy serve --store-all`, the server killed with SIGKILL mid-run and started again on the same
store and port; every connection the agent counts as classified is then in the store once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
from sqlalchemy import exc, select

from alerts.database import engine_for
from alerts.tables import alerts
from tests.conftest import PCAPS, ROOT, free_port
from tests.serving.conftest import stop_server, wait_ready
from tests.serving.test_store_delivery import count_rows, serve_logged

#: Rows in the store before the server is killed: part of the run is stored, part is not yet.
KILL_AFTER_ROWS = 1000
CONNECTION = ("src_ip", "src_port", "dst_ip", "dst_port", "start_time")


def _rows(store: str) -> list[tuple]:
    engine = engine_for(store)
    try:
        with engine.connect() as connection:
            return [
                tuple(row) for row in connection.execute(select(*(alerts.c[c] for c in CONNECTION)))
            ]
    finally:
        engine.dispose()


def _kill_all(server: subprocess.Popen) -> None:
    """SIGKILL to the server and every process it started (BentoML's workers are not all in its
    process group), then wait until they are gone."""
    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, alive
    server.wait(30)


def _wait_for_rows(store: str, count: int, agent: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.poll() is None:
        with contextlib.suppress(exc.DBAPIError):  # the schema not created yet
            if count_rows(store) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"the store never reached {count} rows while the agent ran")


def test_a_server_killed_mid_run_loses_and_doubles_nothing(model_store, store_url, tmp_path):
    uri, _ = model_store
    port, logs = free_port(), tmp_path / "agent"
    url = f"http://127.0.0.1:{port}"
    extra = ("--store-url", store_url, "--store-all", "--workers", "2")
    server = serve_logged(uri, port, tmp_path / "server.log", *extra)
    agent = None
    try:
        wait_ready(url, server)
        with open(tmp_path / "agent.log", "wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "capture_agent.cli", "run", "--pcap"]
                + [str(PCAPS / "synflood_spoofed.pcap"), "--server", url, "--log-dir", str(logs)]
                + ["--agent-id", "e2e", "--batch-size", "64", "--drain-timeout", "400"],
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if k != "DESY_API_TOKEN"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for_rows(store_url, KILL_AFTER_ROWS, agent, timeout=300)
        _kill_all(server)
        server = serve_logged(uri, port, tmp_path / "server.log", *extra)
        wait_ready(url, server)
        agent.wait(600)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        stop_server(server)
    said = (tmp_path / "agent.log").read_text()
    assert agent.returncode == 0, said[-3000:]
    summary = json.loads((logs / "summary.json").read_text())
    classified = [json.loads(line) for line in (logs / "flows.jsonl").read_text().splitlines()]
    assert summary["flows_classified"] == len(classified) > KILL_AFTER_ROWS
    assert summary["flows_lost"] == 0 and summary["flows_rejected"] == 0
    assert summary["send_failures"] > 0  # the server was killed while the agent was sending
    stored = Counter(_rows(store_url))
    expected = Counter(tuple(flow[c] for c in CONNECTION) for flow in classified)
    missing, doubled = expected - stored, stored - expected
    assert not missing and not doubled, (
        f"{missing.total()} connections missing, {doubled.total()} stored more than once"
    )
    assert stored.total() == len(classified)
