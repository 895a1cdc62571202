"""Live capture across two network namespaces joined by a veth pair: curl → HTTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.agent.test_pcaps import scapy_payload_bytes
from tests.conftest import ROOT

pytestmark = pytest.mark.netns


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces():
    """Namespaces A (client, 10.77.0.1) and B (server, 10.77.0.2) on a veth pair; removed after."""
    tag = str(os.getpid() % 10000)
    a, b = f"desy-a{tag}", f"desy-b{tag}"
    va, vb = f"dva{tag}", f"dvb{tag}"
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        for ns, dev, addr in ((a, va, "10.77.0.1/24"), (b, vb, "10.77.0.2/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b, va
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", b], capture_output=True, check=False)


def in_ns(ns: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *args], cwd=ROOT, **kwargs)


def test_agent_sees_a_curl_fetch_across_namespaces(namespaces, tmp_path):
    a, b, iface = namespaces
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_bytes(b"<html>" + b"x" * 5000 + b"</html>")
    web = in_ns(
        b,
        sys.executable,
        "-m",
        "http.server",
        "80",
        "--bind",
        "10.77.0.2",
        "--directory",
        str(site),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    classifier = in_ns(a, sys.executable, "-m", "tests.agent.classify_server", "3999")
    log_dir = tmp_path / "logs"
    agent = in_ns(
        a,
        sys.executable,
        "-m",
        "capture_agent.cli",
        "run",
        "--iface",
        iface,
        "--server",
        "http://127.0.0.1:3999",
        "--log-dir",
        str(log_dir),
        "--agent-id",
        "ns-a",
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        curl = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                a,
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://10.77.0.2/index.html",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert curl.stdout == "200", curl.stderr
        time.sleep(5)  # close linger (2 s) and the agent's 1 s timeout sweep
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    finally:
        for proc in (agent, web, classifier):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert agent.returncode == 0, stderr
    flows = [json.loads(line) for line in (log_dir / "flows.jsonl").read_text().splitlines()]
    (http,) = [f for f in flows if f["dst_ip"] == "10.77.0.2" and f["dst_port"] == 80]
    assert (http["protocol_type"], http["service"], http["flag"], http["logged_in"]) == (
        "tcp",
        "http",
        "SF",
        1,
    )
    assert http["src_ip"] == "10.77.0.1" and http["agent_id"] == "ns-a"
    assert http["verdict"]["label"] in ("normal", "attack")
    expected = scapy_payload_bytes(log_dir / "capture.pcap")
    key = (http["src_ip"], http["src_port"], http["dst_ip"], http["dst_port"])
    assert http["src_bytes"] == expected[key] > 50
    assert http["dst_bytes"] == expected[(key[2], key[3], key[0], key[1])] > 5000
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["packets_kernel_dropped"] == 0 and summary["packets_malformed"] == 0
    assert summary["flows_lost"] == 0
