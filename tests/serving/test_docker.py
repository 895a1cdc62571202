"""The container images, built from this tree on a debootstrap base with Debian's Docker: the
server image serves a registered model, the agent image classifies a real capture through it,
exactly as the same model served outside a container does, and captures live with NET_RAW only."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PCAPS, ROOT, free_port
from tests.serving.conftest import TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

BASE = "desy-base:bookworm"
AGENT, SERVER = "desy-agent:test", "desy-server:test"
#: The container's user (Dockerfile): volumes it writes must be its own.
UID = 10001
PCAP = PCAPS / "nmap_80_w_service_detection.pcap"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def container_logs(name: str) -> str:
    """What a container wrote, standard output and error."""
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout + done.stderr


def daemon_up() -> bool:
    return (
        subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode
        == 0
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The agent and server images, built now (the base once per machine); a Docker daemon
    started for the test if none runs (vfs storage, host networking only, as on CI)."""
    assert shutil.which("docker") and shutil.which("dockerd"), "needs Debian's docker.io"
    started = None
    if not daemon_up():
        log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
        with log.open("w") as out:
            started = subprocess.Popen(
                ["dockerd", "--storage-driver=vfs", "--iptables=false", "--bridge=none"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    try:
        deadline = time.monotonic() + 60
        while not daemon_up():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(1)
        if not docker("images", "-q", BASE).strip():
            subprocess.run([str(ROOT / "deploy" / "docker-base.sh"), BASE], check=True, timeout=900)
        for target, tag in (("agent", AGENT), ("server", SERVER)):
            build = ["build", "--network", "host", "--build-arg", f"BASE={BASE}"]
            docker(*build, "--target", target, "-t", tag, str(ROOT), timeout=2400)
        yield
        docker("image", "prune", "-f", check=False)  # what rebuilding left behind (vfs: GBs)
    finally:
        if started is not None:
            started.terminate()
            try:
                started.wait(timeout=60)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=30)


def run_agent_container(server_url: str, logs: Path) -> list[dict]:
    logs.mkdir()
    os.chown(logs, UID, UID)
    docker(
        "run", "--rm", "--network", "host", "-e", f"DESY_API_TOKEN={TOKEN}",
        "-v", f"{PCAPS}:/pcaps:ro", "-v", f"{logs}:/logs",
        AGENT, "run", "--server", server_url, "--pcap", f"/pcaps/{PCAP.name}", "--log-dir", "/logs",
        timeout=300,
    )  # fmt: skip
    return [json.loads(line) for line in (logs / "flows.jsonl").read_text().splitlines()]


def run_agent_here(server_url: str, logs: Path) -> list[dict]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "capture_agent.cli",
            "run",
            "--server",
            server_url,
            "--pcap",
            str(PCAP),
            "--log-dir",
            str(logs),
        ],
        env=dict(os.environ, DESY_API_TOKEN=TOKEN),
        capture_output=True,
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in (logs / "flows.jsonl").read_text().splitlines()]


def test_agent_image_is_small_without_the_ml_stack(images):
    size = int(docker("image", "inspect", "--format", "{{.Size}}", AGENT))
    assert size < 250e6, f"agent image {size / 1e6:.0f} MB"
    probe = "import importlib.util as u, os; print(os.getuid(), [m for m in ('mlflow', 'bentoml', 'sklearn', 'onnxruntime', 'scapy') if u.find_spec(m)])"
    out = docker("run", "--rm", "--entrypoint", "python3", AGENT, "-c", probe)
    assert out.strip() == f"{UID} ['scapy']"
    setuid = docker(
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "find",
        AGENT,
        "/",
        "-xdev",
        "-perm",
        "/6000",
        "-type",
        "f",
    )
    assert setuid == "", setuid  # NET_RAW is the only privilege the agent can gain


def test_server_and_agent_containers_classify_a_capture(images, model_store, server, tmp_path):
    uri, version = model_store
    store = Path(uri.removeprefix("sqlite:///")).parent
    subprocess.run(["chmod", "-R", "a+rwX", str(store)], check=True)  # MLflow writes beside a model
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"desy-server-test-{port}"
    docker(
        "run", "-d", "--name", name, "--network", "host",
        "-e", f"DESY_API_TOKEN={TOKEN}", "-e", f"MLFLOW_TRACKING_URI={uri}", "-v", f"{store}:{store}",
        "-e", f"DESY_PORT={port}", SERVER, "--workers", "1",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, docker("logs", name, check=False)[-3000:]
            time.sleep(1)
        inside = run_agent_container(url, tmp_path / "container")
        here = run_agent_here(server[0], tmp_path / "here")
        assert len(inside) == len(here) > 10
        assert {f["verdict"]["model_version"] for f in inside} == {version}
        key = ("src_ip", "src_port", "dst_ip", "dst_port", "start_time")
        verdicts = {
            name: sorted((*(f[k] for k in key), f["verdict"]["category"], f["verdict"]["attack_probability"]) for f in flows)
            for name, flows in (("inside", inside), ("here", here))
        }  # fmt: skip
        assert verdicts["inside"] == verdicts["here"]
        health = "starting"
        while health == "starting" and time.monotonic() < deadline + 120:
            time.sleep(2)
            health = docker("inspect", "--format", "{{.State.Health.Status}}", name).strip()
        assert health == "healthy"
    finally:
        docker("rm", "-f", name, check=False)


def test_agent_container_captures_live_as_its_user_with_net_raw_only(images, server, tmp_path):
    url = server[0]
    logs = tmp_path / "live"
    logs.mkdir()
    os.chown(logs, UID, UID)
    name = f"desy-agent-test-{free_port()}"
    docker(
        "run", "-d", "--name", name, "--network", "host", "--cap-drop", "ALL", "--cap-add", "NET_RAW",
        "-e", f"DESY_API_TOKEN={TOKEN}", "-v", f"{logs}:/logs",
        AGENT, "run", "--server", url, "--iface", "lo", "--bpf", f"tcp port {url.rsplit(':', 1)[1]}",
        "--log-dir", "/logs", "--batch-interval", "0.2",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # until the capture is open (a loaded machine is slow)
        while "capturing on lo" not in container_logs(name):
            assert time.monotonic() < deadline, "the agent did not start capturing"
            time.sleep(0.5)
        for _ in range(5):
            httpx.get(f"{url}/livez", timeout=5)
        docker("stop", "--time", "60", name, timeout=90)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).strip() == "0"
        summary = json.loads((logs / "summary.json").read_text())
        assert summary["capture_error"] == ""
        assert summary["packets_seen"] > 0 and summary["flows_classified"] >= 5
    finally:
        docker("rm", "-f", name, check=False)
