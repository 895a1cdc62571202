"""The agent's local logs: traffic.txt, flows.jsonl and capture.pcap (rotated by size).

They hold raw packets and what was said on the network: the directory is made 0700 and every
file 0600, and a symbolic link planted where a log goes is refused, never followed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from scapy.utils import RawPcapWriter


def private_dir(directory: Path) -> Path:
    """Create directory (and parents) readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def private_file(path: Path, mode: str) -> Any:
    """Open path for writing ("wb", "a"...) as 0600, refusing to follow a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link: refusing to write through it") from None
        raise
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


class PcapLog:
    """Raw packets to capture.pcap; when it passes max_bytes it becomes capture.pcap.1 (keeping
    `keep` old files) and a new one starts. Every file is a complete pcap once closed, and the
    buffer is flushed at least every flush_interval seconds. Frames of another link type than
    the first go to a file of their own, capture-linktype<N>.pcap."""

    def __init__(
        self,
        path: Path,
        linktype: int,
        max_bytes: int = 100 * 2**20,
        keep: int = 5,
        flush_interval: float = 1.0,
    ) -> None:
        self.path, self.linktype, self.max_bytes, self.keep = path, linktype, max_bytes, keep
        self.flush_interval = flush_interval
        self.written = 0
        self.others: dict[int, PcapLog] = {}
        self._open()

    def _open(self) -> None:
        self.file = private_file(self.path, "wb")
        self.writer = RawPcapWriter(self.file, linktype=self.linktype, sync=False, snaplen=262144)
        self.writer.write_header(None)
        self.size = 24
        self.last_flush = time.monotonic()

    def write(self, frame: bytes, linktype: int, ts: float) -> None:
        """Append one frame (to the file of its link type)."""
        if linktype != self.linktype:
            other = self.others.get(linktype)
            if other is None:
                path = self.path.with_name(f"{self.path.stem}-linktype{linktype}{self.path.suffix}")
                other = self.others[linktype] = PcapLog(
                    path, linktype, self.max_bytes, self.keep, self.flush_interval
                )
            other.write(frame, linktype, ts)
            return
        sec = int(ts)
        self.writer.write_packet(
            frame, sec=sec, usec=round((ts - sec) * 1e6), caplen=len(frame), wirelen=len(frame)
        )
        self.written += 1
        self.size += 16 + len(frame)
        if self.size >= self.max_bytes:
            self._rotate()
        elif time.monotonic() - self.last_flush >= self.flush_interval:
            self.writer.flush()
            self.last_flush = time.monotonic()

    @property
    def written_all(self) -> int:
        """Frames written to every file, of every link type."""
        return self.written + sum(other.written for other in self.others.values())

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
        for other in self.others.values():
            other.close()


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
        private_dir(directory)
        self.text: TextIO = private_file(directory / "traffic.txt", "a")
        self.jsonl: TextIO = private_file(directory / "flows.jsonl", "a")

    def write_batch(self, records: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
        """Log a classified batch and flush, so the files are complete at every batch boundary."""
        for record, verdict in zip(records, verdicts):
            self.text.write(traffic_line(record, verdict))
            self.jsonl.write(
                json.dumps(dict(record, verdict=verdict), separators=(",", ":")) + "\n"
            )
        self.text.flush()
        self.jsonl.flush()

    def close(self) -> None:
        self.text.close()
        self.jsonl.close()
