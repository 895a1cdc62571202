"""`desy demo`: DeSy end to end on one machine.

Trains the model if the registry has no champion, starts the model server, feeds the capture
agent a capture (its own synthetic one by default), stops the server and summarises the verdicts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import typer

from desy.cli import PROJECT, absolute_store
from desy.registry import CHAMPION_ALIAS, MODEL_NAME, tracking_uri

CLIENT, SERVER, DNS, SCANNER = "192.168.10.5", "192.168.10.80", "192.168.10.53", "192.168.10.66"


def has_champion() -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(absolute_store(tracking_uri()))
    try:
        mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
        return True
    except MlflowException:
        return False


def demo_capture(path: Path, seed: int = 7) -> Path:
    """Write a capture with normal HTTP and DNS sessions, a SYN port scan and a SYN flood."""
    from scapy.layers.dns import DNS as DNSLayer
    from scapy.layers.dns import DNSQR, DNSRR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    rng = random.Random(seed)
    packets = []
    t0 = 1_760_000_000.0

    def add(pkt, t):
        pkt.time = t0 + t
        packets.append(pkt)

    for i in range(20):  # normal web browsing and name lookups
        t, port = i * 3.0, 40000 + i
        c, s = Ether() / IP(src=CLIENT, dst=SERVER), Ether() / IP(src=SERVER, dst=CLIENT)
        request = f"GET /page{i}.html HTTP/1.1\r\nHost: intranet\r\nUser-Agent: demo\r\n\r\n".encode()
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 1200\r\n\r\n" + b"x" * 1200
        add(c / TCP(sport=port, dport=80, flags="S", seq=100), t)
        add(s / TCP(sport=80, dport=port, flags="SA", seq=900, ack=101), t + 0.001)
        add(c / TCP(sport=port, dport=80, flags="A", seq=101, ack=901), t + 0.002)
        add(c / TCP(sport=port, dport=80, flags="PA", seq=101, ack=901) / request, t + 0.003)
        add(s / TCP(sport=80, dport=port, flags="PA", seq=901, ack=101 + len(request)) / response, t + 0.02)
        add(c / TCP(sport=port, dport=80, flags="FA", seq=101 + len(request), ack=901 + len(response)), t + 0.03)
        add(s / TCP(sport=80, dport=port, flags="FA", seq=901 + len(response), ack=102 + len(request)), t + 0.031)
        add(c / TCP(sport=port, dport=80, flags="A", seq=102 + len(request), ack=902 + len(response)), t + 0.032)
        name = f"host{i}.example."
        add(Ether() / IP(src=CLIENT, dst=DNS) / UDP(sport=50000 + i, dport=53) / DNSLayer(id=i, qd=DNSQR(qname=name)), t + 0.5)
        add(Ether() / IP(src=DNS, dst=CLIENT) / UDP(sport=53, dport=50000 + i)
            / DNSLayer(id=i, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="192.168.10.9")), t + 0.51)
    open_ports = {22, 80}
    for n, port in enumerate(range(1, 1025)):  # SYN port scan
        t = 70.0 + n * 0.001
        add(Ether() / IP(src=SCANNER, dst=SERVER) / TCP(sport=61000, dport=port, flags="S", seq=7), t)
        if port in open_ports:
            add(Ether() / IP(src=SERVER, dst=SCANNER) / TCP(sport=port, dport=61000, flags="SA", seq=3, ack=8), t + 0.0002)
            add(Ether() / IP(src=SCANNER, dst=SERVER) / TCP(sport=61000, dport=port, flags="R", seq=8), t + 0.0004)
        else:
            add(Ether() / IP(src=SERVER, dst=SCANNER) / TCP(sport=port, dport=61000, flags="RA", seq=0, ack=8), t + 0.0002)
    for n in range(3000):  # SYN flood from spoofed sources
        source = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        add(Ether() / IP(src=source, dst=SERVER) / TCP(sport=rng.randrange(1024, 65535), dport=80, flags="S"), 80.0 + n * 0.0005)
    packets.sort(key=lambda p: p.time)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), packets)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("DESY_API_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "desy.cli", "serve", "--port", str(port)], cwd=PROJECT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("model server exited:\n" + proc.stderr.read().decode()[-3000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"model server not ready after {timeout:.0f} s")


def summary(log_dir: Path) -> str:
    """Connections, verdicts by category and the top flagged talkers, as a text table."""
    flows = [json.loads(line) for line in (log_dir / "flows.jsonl").read_text().splitlines()]
    categories = Counter(f["verdict"]["category"] for f in flows)
    attacks = [f for f in flows if f["verdict"]["label"] == "attack"]
    lines = [f"connections classified: {len(flows)} (attacks {len(attacks)}, "
             f"model version {flows[0]['verdict']['model_version'] if flows else '-'})", "",
             f"{'verdict':<10}{'connections':>12}"]
    lines += [f"{name:<10}{categories.get(name, 0):>12}" for name in ("normal", "dos", "probe", "r2l", "u2r")]
    for title, field in (("top flagged talkers", "src_ip"), ("top attacked hosts", "dst_ip")):
        counts = Counter(f[field] for f in attacks)
        lines += ["", f"{title:<22}{'attacks':>8}  categories"]
        for address, count in counts.most_common(5):
            kinds = Counter(f["verdict"]["category"] for f in attacks if f[field] == address)
            lines.append(f"{address:<22}{count:>8}  " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    lines += ["", f"logs: {log_dir}/traffic.txt, {log_dir}/flows.jsonl, {log_dir}/capture.pcap"]
    return "\n".join(lines)


def run_demo(pcap: Path | None, iface: str | None, log_dir: Path, seconds: float) -> None:
    """The whole demo; raises on failure."""
    if not has_champion():
        typer.echo("no champion model yet: running the training pipeline (dvc repro)…", err=True)
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=PROJECT, check=True)
    if pcap is None and iface is None:
        pcap = demo_capture(log_dir / "demo-input.pcap")
        typer.echo(f"wrote demo capture {pcap} (HTTP and DNS sessions, a SYN port scan, a SYN flood)", err=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    typer.echo(f"starting the model server on {url}…", err=True)
    server = start_server(port)
    try:
        wait_ready(url, server)
        agent = [sys.executable, "-m", "capture_agent.cli", "run", "--server", url, "--log-dir", str(log_dir), "--agent-id", "demo"]
        agent += ["--pcap", str(pcap)] if pcap else ["--iface", iface]
        typer.echo("capture agent: " + (f"replaying {pcap}" if pcap else f"capturing on {iface} for {seconds:.0f} s"), err=True)
        proc = subprocess.Popen(agent, cwd=PROJECT)
        if iface:
            time.sleep(seconds)
            proc.send_signal(signal.SIGINT)
        if proc.wait() != 0:
            raise RuntimeError("the capture agent failed")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    typer.echo("\n" + summary(log_dir))
