"""Building real frames and pcaps with scapy for the agent tests."""

from __future__ import annotations

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
