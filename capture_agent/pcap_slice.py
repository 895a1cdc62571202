"""Cutting one connection's packets out of the agent's rotated capture.pcap files, so that an
analyst gets a pcap for Wireshark from an alert in the dashboard."""

from __future__ import annotations

import socket
from pathlib import Path

from scapy.utils import RawPcapWriter

from capture_agent._engine import endpoints
from capture_agent.logs import private_file
from capture_agent.pcap import frames

#: Seconds before the start and after the end of a connection still searched (handshake
#: retransmissions, stragglers after the close, clock rounding of the record's times).
SLACK = 2.0


def capture_files(log_dir: Path) -> list[Path]:
    """capture.pcap and its rotations, oldest first (capture.pcap.5 … capture.pcap.1, capture.pcap)."""
    rotated = sorted(
        log_dir.glob("capture.pcap.*"),
        key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
    )
    current = log_dir / "capture.pcap"
    return [p for p in reversed(rotated) if p.suffix[1:].isdigit()] + (
        [current] if current.exists() else []
    )


def _raw(address: str) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"not an IP address: {address!r}") from None


def slice_connection(
    files: list[Path],
    out: Path,
    src: str,
    dst: str,
    start: float,
    end: float,
    src_port: int = 0,
    dst_port: int = 0,
) -> int:
    """Write to out the frames between the two addresses (and ports, when not 0) from start - SLACK
    to end + SLACK, in capture order; returns how many."""
    ends = {_raw(src), _raw(dst)}
    ports = {(src_port, dst_port), (dst_port, src_port)} if src_port or dst_port else None
    writer, written = None, 0
    try:
        for path in files:
            for frame, linktype, ts in frames(path):
                if not start - SLACK <= ts <= end + SLACK:
                    continue
                pkt = endpoints(frame, linktype)
                if pkt is None or {pkt[0], pkt[1]} != ends:
                    continue
                if ports is not None and not pkt[4] and pkt[2:4] not in ports:
                    continue
                if writer is None:
                    writer = RawPcapWriter(
                        private_file(out, "wb"), linktype=linktype, sync=False, snaplen=262144
                    )
                    writer.write_header(None)
                seconds = int(ts)
                writer.write_packet(
                    frame,
                    sec=seconds,
                    usec=round((ts - seconds) * 1e6),
                    caplen=len(frame),
                    wirelen=len(frame),
                )
                written += 1
    finally:
        if writer is not None:
            writer.close()
    return written
