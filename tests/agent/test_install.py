"""The agent installs and runs without the ML stack."""

import subprocess
import sys

import pytest

from tests.conftest import PCAPS, ROOT

ML_STACK = (
    "mlflow",
    "bentoml",
    "dvc",
    "great-expectations",
    "great_expectations",
    "scikit-learn",
    "sklearn",
    "pandas",
    "onnxruntime",
)


@pytest.mark.slow
def test_agent_extra_installs_alone_and_extracts(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(
        ["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(python), f"{ROOT}[agent]"],
        check=True,
        timeout=600,
    )
    installed = subprocess.run(
        ["uv", "pip", "list", "--python", str(python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert not names & set(ML_STACK), names & set(ML_STACK)
    out = tmp_path / "flows.csv"
    subprocess.run(
        [venv / "bin" / "desy-agent", "extract", str(PCAPS / "whois.pcap"), "--out", str(out)],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.read_text().startswith("duration,protocol_type,service,flag,")
    imported = subprocess.run(
        [
            python,
            "-c",
            (
                "import sys, capture_agent.cli, capture_agent.agent, capture_agent.live;"
                "print(' '.join(sorted(sys.modules)))"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert not set(imported.stdout.split()) & set(ML_STACK)
