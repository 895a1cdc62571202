"""A server with an agents file: each agent's records are stored under the id its token names,
whatever agent_id they claim; a disabled or unknown token gets 401 at its next request. A corrupt
agents file stops `desy serve` at start, and one found on a reload is logged once while the last
good agents are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from sqlalchemy import select

from alerts.database import engine_for
from alerts.tables import alerts
from desy.records import record
from serving.agent_tokens import add, disable
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS, ROOT, free_port, run
from tests.serving.conftest import start_server, stop_server, wait_ready


def test_an_agent_speaks_only_for_itself(model_store, tmp_path):
    uri, _ = model_store
    agents, store = tmp_path / "agents.json", f"sqlite:///{tmp_path}/alerts.db"
    tokens = {}
    for name in ("sensor-a", "sensor-b"):
        added = subprocess.run(
            [sys.executable, "-m", "commands", "agents", "add", name, "--file", str(agents)],
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
                "commands",
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


def test_a_corrupt_agents_file_stops_the_server_at_start(tmp_path):
    agents = tmp_path / "agents.json"
    for content in ("{not json", json.dumps({"agents": [{"id": "sensor-a"}]})):
        agents.write_text(content)
        started = run(
            [sys.executable, "-m", "commands", "serve", "--no-store", "--agents-file", agents],
            120,
        )
        assert started.returncode == 2, started.stderr
        (line,) = started.stderr.strip().splitlines()
        assert line.startswith(f"error: {agents}: not an agents file (")


def test_a_broken_agents_file_is_logged_and_the_last_good_one_kept(model_store, tmp_path):
    uri, _ = model_store
    agents = tmp_path / "agents.json"
    token = add(agents, "sensor-a")
    flows = [record(tuple(r.values()), "x") for r in extract_file(PCAPS / "whois.pcap")[0]]
    port, log = free_port(), tmp_path / "server.log"
    argv = [
        "serve",
        "--port",
        str(port),
        "--agents-file",
        str(agents),
        "--no-store",
        "--workers",
        "1",
    ]
    with log.open("w") as out:  # the server logs to standard output
        server = subprocess.Popen(
            [sys.executable, "-m", "commands", *argv],
            cwd=ROOT,
            env=dict(os.environ, MLFLOW_TRACKING_URI=uri),
            stdout=out,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/classify"
    as_a = {"Authorization": f"Bearer {token}"}
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        assert httpx.post(url, json={"flows": flows}, headers=as_a, timeout=60).status_code == 200
        good = agents.read_text()
        agents.write_text('{"agents": [')  # a hand edit gone wrong
        for _ in range(5):
            answer = httpx.post(url, json={"flows": flows}, headers=as_a, timeout=60)
            assert answer.status_code == 200
        agents.write_text(good)
        disable(agents, "sensor-a")  # a good file again: read
        assert httpx.post(url, json={"flows": flows}, headers=as_a, timeout=60).status_code == 401
    finally:
        stop_server(server)
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert f"{agents}: not an agents file" in errors[0] and "keeping the 1 enabled" in errors[0]
