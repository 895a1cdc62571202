"""The capture agent replaying a real capture against the real model server."""

import json
import os
import subprocess
import sys

from scapy.utils import rdpcap

from tests.conftest import PCAPS
from tests.serving.conftest import TOKEN


def test_agent_replays_a_capture_against_the_server(server, tmp_path):
    url, version = server
    pcap = PCAPS / "nmap_80_w_service_detection.pcap"
    logs = tmp_path / "logs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "capture_agent.cli",
            "run",
            "--pcap",
            str(pcap),
            "--server",
            url,
            "--log-dir",
            str(logs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, DESY_API_TOKEN=TOKEN),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((logs / "summary.json").read_text())
    flows = [json.loads(line) for line in (logs / "flows.jsonl").read_text().splitlines()]
    assert len(flows) == summary["connections_emitted"] == summary["flows_classified"] > 0
    assert summary["flows_lost"] == summary["flows_rejected"] == 0
    assert all(f["verdict"]["model_version"] == version for f in flows)
    assert all(f["verdict"]["category"] in ("normal", "dos", "probe", "r2l", "u2r") for f in flows)
    assert len((logs / "traffic.txt").read_text().splitlines()) == len(flows)
    assert len(rdpcap(str(logs / "capture.pcap"))) == 154
