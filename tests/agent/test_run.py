"""`desy-agent run --pcap` against a real HTTP server: logs, spool and retry, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from scapy.utils import rdpcap

from desy.demo import free_port
from tests.agent.classify_server import ClassifyServer
from tests.conftest import PCAPS

AGENT = [sys.executable, "-m", "capture_agent.cli"]


def agent_run(pcap: Path, server: str, log_dir: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*AGENT, "run", "--pcap", str(pcap), "--server", server, "--log-dir", str(log_dir),
                           "--agent-id", "test-agent", *extra], capture_output=True, text=True, timeout=timeout)


def extracted_rows(pcap: Path, tmp_path: Path) -> int:
    out = tmp_path / "extract.csv"
    subprocess.run([*AGENT, "extract", str(pcap), "--out", str(out), "-q"], check=True, timeout=120)
    return len(out.read_text().splitlines()) - 1


def test_run_logs_one_verdict_per_connection(tmp_path):
    pcap = PCAPS / "nmap_80_all.pcap"
    with ClassifyServer(token="s3cret") as server:
        result = agent_run(pcap, server.url, tmp_path / "logs", "--token", "s3cret")
    assert result.returncode == 0, result.stderr
    connections = extracted_rows(pcap, tmp_path)
    flows = [json.loads(line) for line in (tmp_path / "logs" / "flows.jsonl").read_text().splitlines()]
    assert len(flows) == connections == len(server.received)
    assert all(f["agent_id"] == "test-agent" and f["verdict"]["model_version"] == "7" for f in flows)
    assert {f["verdict"]["label"] for f in flows} <= {"normal", "attack"}
    assert len((tmp_path / "logs" / "traffic.txt").read_text().splitlines()) == connections
    assert len(rdpcap(str(tmp_path / "logs" / "capture.pcap"))) == 431
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["flows_classified"] == connections and summary["flows_lost"] == 0
    assert summary["packets_seen"] == 431 and summary["packets_written_pcap"] == 431


def test_wrong_token_is_reported_not_retried_forever(tmp_path):
    with ClassifyServer(token="right") as server:
        result = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs", "--token", "wrong")
    assert result.returncode == 0
    assert "HTTP 401" in result.stderr
    assert json.loads((tmp_path / "logs" / "summary.json").read_text())["flows_rejected"] == 1


def test_server_down_then_up_spools_and_classifies_everything(tmp_path):
    port = free_port()
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen([*AGENT, "run", "--pcap", str(PCAPS / "masscan_tcp_0_1000.pcap"), "--server",
                             f"http://127.0.0.1:{port}", "--log-dir", str(log_dir), "--drain-timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list((log_dir / "spool").glob("batch-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list((log_dir / "spool").glob("batch-*.json")), "nothing was spooled while the server was down"
    with ClassifyServer(port=port) as server:
        _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["flows_lost"] == 0 and summary["flows_spooled"] == 0
    assert summary["flows_classified"] == summary["connections_emitted"] == len(server.received) > 1000
    assert not list((log_dir / "spool").glob("batch-*.json"))
    assert "server unavailable" in stderr


def test_spool_limit_loses_flows_and_says_so(tmp_path):
    result = agent_run(PCAPS / "synflood_spoofed.pcap", f"http://127.0.0.1:{free_port()}", tmp_path / "logs",
                       "--spool-mb", "1", "--drain-timeout", "0")
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["flows_lost"] > 0 and summary["flows_spooled"] > 0
    assert summary["flows_lost"] + summary["flows_spooled"] == summary["connections_emitted"]
    assert "spool limit" in result.stderr


def test_capture_pcap_is_valid_after_sigterm(tmp_path):
    with ClassifyServer() as server:
        proc = subprocess.Popen([*AGENT, "run", "--pcap", str(PCAPS / "synflood_spoofed.pcap"), "--server", server.url,
                                 "--log-dir", str(tmp_path / "logs")], stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    check = subprocess.run(["tcpdump", "-nr", str(tmp_path / "logs" / "capture.pcap")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert len(check.stdout.splitlines()) == summary["packets_written_pcap"] > 0
