"""Building real frames and pcaps with scapy for the agent tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from capture_agent.extractor import Extractor
from capture_agent.pcap import frames
from desy.records import ROW_FIELDS

CLIENT, SERVER = "10.1.0.1", "10.1.0.2"


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: str,
    seq: int = 1000,
    payload: bytes = b"",
    t: float = 0.0,
):
    pkt = (
        Ether()
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq)
        / payload
    )
    pkt.time = 1_700_000_000 + t
    return pkt


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", t: float = 0.0):
    pkt = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    pkt.time = 1_700_000_000 + t
    return pkt


def icmp(src: str, dst: str, kind: int = 8, payload: bytes = b"x" * 32, t: float = 0.0):
    pkt = Ether() / IP(src=src, dst=dst) / ICMP(type=kind) / payload
    pkt.time = 1_700_000_000 + t
    return pkt


def records(rows: list[tuple]) -> list[dict]:
    return [dict(zip(ROW_FIELDS, row)) for row in rows]


def extract_packets(packets) -> list[dict]:
    """Run scapy packets through the extractor as raw Ethernet frames, in order; records as dicts."""
    extractor = Extractor()
    rows = []
    for pkt in packets:
        rows += extractor.feed(bytes(pkt), 1, float(pkt.time))
    return records(rows + extractor.finish())


def extract_file(path: Path) -> tuple[list[dict], Extractor]:
    extractor = Extractor()
    rows = []
    for frame, linktype, ts in frames(path):
        rows += extractor.feed(frame, linktype, ts)
    return records(rows + extractor.finish()), extractor


def write_pcap(path: Path, packets) -> Path:
    wrpcap(str(path), packets)
    return path


AGENT = [sys.executable, "-m", "capture_agent.cli"]


def agent_argv(pcap: Path, server: str, log_dir: Path, *extra: str) -> list[str]:
    return [
        *AGENT,
        "run",
        "--pcap",
        str(pcap),
        "--server",
        server,
        "--log-dir",
        str(log_dir),
        *extra,
    ]


def agent_run(
    pcap: Path,
    server: str,
    log_dir: Path,
    *extra: str,
    token: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DESY_API_TOKEN"} | (
        {"DESY_API_TOKEN": token} if token else {}
    )
    return subprocess.run(
        agent_argv(pcap, server, log_dir, "--agent-id", "test-agent", *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def extracted_rows(pcap: Path, tmp_path: Path) -> int:
    out = tmp_path / "extract.csv"
    subprocess.run([*AGENT, "extract", str(pcap), "--out", str(out), "-q"], check=True, timeout=120)
    return len(out.read_text().splitlines()) - 1


def summary_counts(stderr: str) -> dict[str, int]:
    """The integer counters of the agent's summary line on stderr."""
    line = next(line for line in stderr.splitlines() if line.startswith("summary: "))
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)(?:, |$)", line)}


def add_up(counts: dict[str, int]) -> bool:
    """Whether every flow of the run (and of the spool at start) is classified, spooled,
    rejected or lost."""
    sent = counts["flows_classified"] + counts["flows_spooled"] + counts["flows_rejected"]
    return (
        counts["connections_emitted"] + counts["flows_spooled_before"]
        == sent + counts["flows_lost"]
    )
