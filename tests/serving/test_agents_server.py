"""A server with an agents file: each agent's records are stored under the id its token names,
whatever agent_id they claim; a disabled or unknown token gets 401 at its next request."""

from __future__ import annotations

import subprocess
import sys

import httpx
from sqlalchemy import select

from alerts.store import engine_for
from alerts.tables import alerts
from desy.records import record
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS, ROOT, free_port
from tests.serving.conftest import start_server, stop_server, wait_ready


def test_an_agent_speaks_only_for_itself(model_store, tmp_path):
    uri, _ = model_store
    agents, store = tmp_path / "agents.json", f"sqlite:///{tmp_path}/alerts.db"
    tokens = {}
    for name in ("sensor-a", "sensor-b"):
        added = subprocess.run(
            [sys.executable, "-m", "desy.cli", "agents", "add", name, "--file", str(agents)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[name] = added.stdout.strip()
    flood = [
        record(tuple(r.values()), "sensor-b")
        for r in extract_file(PCAPS / "synflood_spoofed.pcap")[0][:50]
    ]
    port = free_port()
    server = start_server(
        uri, None, port, "--agents-file", str(agents), "--store-url", store, "--workers", "1"
    )
    url = f"http://127.0.0.1:{port}/classify"
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        as_a = {"Authorization": f"Bearer {tokens['sensor-a']}"}
        answer = httpx.post(
            url, json={"flows": flood}, headers=as_a, timeout=60
        )  # claims to be sensor-b
        assert answer.status_code == 200
        attacks = sum(v["label"] == "attack" for v in answer.json()["results"])
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            assert (
                httpx.post(url, json={"flows": flood}, headers=headers, timeout=60).status_code
                == 401
            )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "desy.cli",
                "agents",
                "disable",
                "sensor-a",
                "--file",
                str(agents),
            ],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        assert httpx.post(url, json={"flows": flood}, headers=as_a, timeout=60).status_code == 401
        as_b = {"Authorization": f"Bearer {tokens['sensor-b']}"}
        assert (
            httpx.post(url, json={"flows": flood[:1]}, headers=as_b, timeout=60).status_code == 200
        )
    finally:
        stop_server(server)
    with engine_for(store).connect() as connection:
        senders = [row.agent_id for row in connection.execute(select(alerts.c.agent_id))]
    assert attacks > 0 and senders.count("sensor-a") == attacks  # stored under the token's agent
