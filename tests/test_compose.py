"""compose.yaml is valid for Docker Compose (Debian's docker-compose validates it against the
Compose schema), refuses to start without the tokens, and builds targets the Dockerfile has."""

import os
import re
import subprocess

import yaml

from tests.conftest import ROOT


def config(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("DESY_")} | env,
        check=False,
    )


def test_compose_file_is_valid_and_needs_the_tokens():
    done = config(DESY_API_TOKEN="t1", DESY_DASHBOARD_TOKEN="t2", POSTGRES_PASSWORD="p")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "mlflow", "server", "dashboard", "agent"}
    assert services["agent"]["cap_add"] == ["NET_RAW"] and services["agent"]["cap_drop"] == ["ALL"]
    refused = config(DESY_DASHBOARD_TOKEN="t2", POSTGRES_PASSWORD="p")
    assert refused.returncode != 0 and "set DESY_API_TOKEN" in refused.stderr


def test_compose_builds_targets_of_the_dockerfile():
    targets = set(
        re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    )
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    built = {s["build"]["target"] for s in compose["services"].values() if "build" in s}
    assert built == {"server", "dashboard", "agent"} and built <= targets
