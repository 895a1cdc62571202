"""Live capture through the TPACKET_V3 ring, in network namespaces: link types from the socket
(Ethernet on veth and loopback, raw IP on tun), VLAN tags, BPF filters and kernel drops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent.live_probe import FAR, FLOOD, NEAR, TUN_FAR, TUN_NEAR
from tests.conftest import ROOT

pytestmark = pytest.mark.netns
TAG = str(os.getpid() % 10000)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns():
    """A fresh namespace, loopback up (IPv6 off, so that no stray neighbour discovery is
    captured)."""
    name = f"desy-ring{TAG}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for scope in ("all", "default"):
            sh(
                "ip",
                "netns",
                "exec",
                name,
                "sysctl",
                "-qw",
                f"net.ipv6.conf.{scope}.disable_ipv6=1",
            )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def veth(netns):
    """netns joined to a peer namespace by a veth pair; the near device."""
    peer, near, far = f"desy-rpeer{TAG}", f"drv{TAG}", f"drp{TAG}"
    sh("ip", "netns", "add", peer)
    try:
        sh("ip", "link", "add", near, "netns", netns, "type", "veth", "peer", far, "netns", peer)
        for ns, dev, addr in ((netns, near, NEAR), (peer, far, FAR)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield near
    finally:
        subprocess.run(["ip", "netns", "del", peer], capture_output=True, check=False)


def probe(ns: str, *args: str) -> dict:
    """Run tests.agent.live_probe in ns; what it captured."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.agent.live_probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def endpoints(record: dict) -> tuple:
    return record["protocol_type"], record["service"], record["src_ip"], record["dst_ip"]


def test_tun_frames_are_raw_ip_and_decode(netns):
    got = probe(netns, "tun", f"dtun{TAG}", "ip")
    assert got["linktype"] == got["linktypes"][0] == 101 and len(got["frames"]) == 3
    assert all(frame.startswith("45") for frame in got["frames"])  # IPv4, no link header
    assert sorted(map(endpoints, got["records"])) == [
        ("icmp", "eco_i", TUN_FAR, TUN_NEAR),
        ("icmp", "ecr_i", TUN_NEAR, TUN_FAR),
        ("udp", "private", TUN_NEAR, TUN_FAR),
    ]
    assert all(record["flag"] == "SF" for record in got["records"])


def test_the_agent_classifies_what_it_captures_on_a_tun(netns, tmp_path):
    """desy-agent run on a tun device: raw IP frames, decoded as such (not as Ethernet)."""
    log_dir, name = tmp_path / "logs", f"dtun{TAG}"
    keeper = in_ns(netns, "-m", "tests.agent.live_probe", "keep", name)
    classifier = in_ns(netns, "-m", "tests.agent.classify_server", "3999")
    try:
        assert keeper.stdout.readline() == "ready\n"
        agent = in_ns(
            netns, "-m", "capture_agent.cli", "run", "--iface", name, "--log-dir", str(log_dir),
            "--server", "http://127.0.0.1:3999", "--agent-id", "tun",
        )  # fmt: skip
        send_until_logged(keeper, log_dir / "capture.pcap")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0, agent.stderr.read()
    finally:
        for proc in (keeper, classifier, agent):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    flows = [json.loads(line) for line in (log_dir / "flows.jsonl").read_text().splitlines()]
    assert {endpoints(flow) for flow in flows} == {
        ("icmp", "eco_i", TUN_FAR, TUN_NEAR),
        ("icmp", "ecr_i", TUN_NEAR, TUN_FAR),
        ("udp", "private", TUN_NEAR, TUN_FAR),
    }
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["packets_malformed"] == summary["packets_not_ip"] == 0
    assert summary["packets_parsed"] == summary["packets_seen"] >= 3


def in_ns(ns: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def send_until_logged(keeper: subprocess.Popen, capture: Path) -> None:
    """Have keeper send its traffic until the agent has logged some (it is capturing then)."""
    deadline = time.monotonic() + 30
    while not (capture.exists() and capture.stat().st_size > 24):
        assert time.monotonic() < deadline, "the agent captured nothing in 30 s"
        keeper.stdin.write("send\n")
        keeper.stdin.flush()
        time.sleep(0.5)


def test_the_filter_is_compiled_for_the_link_type(netns):
    got = probe(netns, "tun", f"dtun{TAG}", "udp")
    assert len(got["frames"]) == 1
    assert list(map(endpoints, got["records"])) == [("udp", "private", TUN_NEAR, TUN_FAR)]


def test_an_interface_of_unknown_hardware_type_is_refused(netns):
    got = probe(netns, "unknown", f"dtun{TAG}")
    assert "hardware type 280" in got["error"]


def test_veth_frames_are_ethernet(netns, veth):
    got = probe(netns, "veth", veth, FAR)
    assert got["linktypes"] == [1] and len(got["frames"]) == 1
    assert got["frames"][0][24:28] == "0800"  # after the two MAC addresses: IPv4
    assert list(map(endpoints, got["records"])) == [("udp", "private", NEAR, FAR)]
    assert got["dropped"] == 0


def test_vlan_tags_the_kernel_took_out_are_put_back(netns):
    got = probe(netns, "vlan", f"drx{TAG}")
    assert got["frames"] == [got["sent"]] and got["sent"][24:32] == "81000005"
    assert list(map(endpoints, got["records"])) == [("udp", "domain_u", NEAR, FAR)]


def test_loopback_frames_are_seen_once(netns):
    got = probe(netns, "lo", "lo")
    assert got["linktypes"] == [1]
    payloads = sorted(bytes.fromhex(frame)[-6:] for frame in got["frames"])
    assert payloads == [b"desy 0", b"desy 1"]


def test_kernel_drops_are_counted_and_the_rest_delivered(netns, veth):
    got = probe(netns, "flood", veth, FAR)
    assert 0 < got["dropped"] < FLOOD
    assert len(got["frames"]) + got["dropped"] == FLOOD
