"""TLS end to end: `desy serve --ssl-certfile/--ssl-keyfile` with a certificate of a CA made here,
and the agent trusting that CA with --ca-cert; each agent with its own token."""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

from deploy.cluster import certificates
from tests.conftest import PCAPS, free_port, run
from tests.serving.conftest import start_server, stop_server


def test_agents_classify_over_tls_with_a_private_ca(model_store, tmp_path):
    uri, version = model_store
    ca, cert, key = certificates(tmp_path, ("127.0.0.1",))
    agents = tmp_path / "agents.json"
    token = run(
        [sys.executable, "-m", "commands", "agents", "add", "edge-1", "--file", agents], 60
    ).stdout.strip()
    port = free_port()
    tls = [
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        "--agents-file",
        str(agents),
        "--no-store",
    ]
    server = start_server(uri, None, port, *tls)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", verify=str(ca), timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert httpx.get(f"{url}/readyz", verify=str(ca), timeout=5).status_code == 200
        # the server image's HEALTHCHECK: HTTPS when the certificate is set, as the server serves
        check = [sys.executable, "-m", "serving.healthcheck"]
        health = {**os.environ, "DESY_PORT": str(port), "DESY_SSL_CERTFILE": str(cert)}
        assert run(check, 30, env=health).returncode == 0
        assert run(check, 30, env={**health, "DESY_SSL_CERTFILE": ""}).returncode == 1
        argv = [
            sys.executable,
            "-m",
            "capture_agent.cli",
            "run",
            "--pcap",
            PCAPS / "nmap_80_all.pcap",
        ]
        env = {**os.environ, "DESY_API_TOKEN": token}
        done = run(
            [*argv, "--server", url, "--ca-cert", ca, "--log-dir", tmp_path / "logs"], 300, env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        flows = [
            json.loads(line)
            for line in (tmp_path / "logs" / "flows.jsonl").read_text().splitlines()
        ]
        assert len(flows) == 41 and {f["verdict"]["model_version"] for f in flows} == {version}
        untrusted = run([*argv, "--server", url, "--log-dir", tmp_path / "logs2"], 300, env=env)
        assert (
            untrusted.returncode == 1 and "certificate" in untrusted.stderr
        )  # no --ca-cert: refused
    finally:
        stop_server(server)
