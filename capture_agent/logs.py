"""The agent's local logs: traffic.txt, flows.jsonl and capture.pcap (rotated by size)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

from scapy.utils import RawPcapWriter


class PcapLog:
    """Raw packets to capture.pcap; when it passes max_bytes it becomes capture.pcap.1 (keeping
    `keep` old files) and a new one starts. Every file is a complete pcap once closed, and the
    buffer is flushed at least every flush_interval seconds."""

    def __init__(self, path: Path, linktype: int, max_bytes: int = 100 * 2**20, keep: int = 5,
                 flush_interval: float = 1.0) -> None:
        self.path, self.linktype, self.max_bytes, self.keep = path, linktype, max_bytes, keep
        self.flush_interval = flush_interval
        self.written = 0
        self.skipped = 0
        self._open()

    def _open(self) -> None:
        self.writer = RawPcapWriter(str(self.path), linktype=self.linktype, sync=False, snaplen=262144)
        self.writer.write_header(None)
        self.size = 24
        self.last_flush = time.monotonic()

    def write(self, frame: bytes, linktype: int, ts: float) -> None:
        """Append one frame (frames of another link type than the file's are counted, not written)."""
        if linktype != self.linktype:
            self.skipped += 1
            return
        sec = int(ts)
        self.writer.write_packet(frame, sec=sec, usec=int(round((ts - sec) * 1e6)), caplen=len(frame), wirelen=len(frame))
        self.written += 1
        self.size += 16 + len(frame)
        if self.size >= self.max_bytes:
            self._rotate()
        elif time.monotonic() - self.last_flush >= self.flush_interval:
            self.writer.flush()
            self.last_flush = time.monotonic()

    def _rotate(self) -> None:
        self.writer.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        self.writer.close()


def traffic_line(record: dict[str, Any], verdict: dict[str, Any]) -> str:
    """One human-readable line for traffic.txt."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["start_time"]))
    label = verdict["label"].upper()
    category = f" {verdict['category']}" if verdict["label"] == "attack" else ""
    return (
        f"{start}Z {record['protocol_type']:4} {record['src_ip']}:{record['src_port']} -> "
        f"{record['dst_ip']}:{record['dst_port']} {record['service']} {record['flag']} "
        f"{record['src_bytes']}B/{record['dst_bytes']}B {record['duration']}s "
        f"{label}{category} p={verdict['attack_probability']:.3f}\n"
    )


class FlowLogs:
    """traffic.txt and flows.jsonl, one entry per classified connection."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.text: TextIO = (directory / "traffic.txt").open("a", encoding="utf-8")
        self.jsonl: TextIO = (directory / "flows.jsonl").open("a", encoding="utf-8")

    def write_batch(self, records: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
        """Log a classified batch and flush, so the files are complete at every batch boundary."""
        for record, verdict in zip(records, verdicts):
            self.text.write(traffic_line(record, verdict))
            self.jsonl.write(json.dumps(dict(record, verdict=verdict), separators=(",", ":")) + "\n")
        self.text.flush()
        self.jsonl.flush()

    def close(self) -> None:
        self.text.close()
        self.jsonl.close()
