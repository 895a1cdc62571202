"""The agent's local logs: traffic.txt, flows.jsonl and capture.pcap (rotated by size).

They hold raw packets and what was said on the network: the directory is made 0700 and every
file 0600, and a symbolic link planted where a log goes is refused, never followed. Nothing is
truncated at start: flows.jsonl and traffic.txt are appended to, and a capture.pcap left by an
earlier run is rotated to capture.pcap.1. What cannot be written (a full disk) is cut back off so
that every file stays whole, counted per log, and said once; the capture goes on.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from pathlib import Path
from typing import Any

from capture_agent.blocks import Block

log = logging.getLogger("desy.agent.logs")
PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, zone, sigfigs, snap length, link type
PCAP_RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured and original length
MAX_SECONDS = 2**32 - 1  # the latest time a classic pcap record can hold
FLUSH_BYTES = 2**20


def private_dir(directory: Path) -> Path:
    """Create directory (and parents) readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def private_fd(path: Path, flags: int) -> int:
    """Open path (creating it 0600) with flags, refusing to follow a symbolic link."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link: refusing to write through it") from None
        raise


def private_file(path: Path, mode: str) -> Any:
    """Open path for writing ("wb", "a"...) as 0600, refusing to follow a symbolic link."""
    fd = private_fd(path, os.O_WRONLY | (os.O_APPEND if "a" in mode else os.O_TRUNC))
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def write_all(fd: int, data: bytes, end: int) -> OSError | None:
    """Write data at the end of fd (whose length is `end`); on failure cut the file back to
    `end`, so that it holds no part of data, and return the error."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as err:
        try:
            os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
        except OSError:
            pass  # nothing more can be done: the error is reported anyway
        return err
    return None


class LostEntries:
    """Counts the entries that could not be written to one log, saying why the first time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def add(self, count: int, why: str) -> None:
        if not self.count:
            log.error("cannot write %s (%s): not logged there, and counted", self.name, why)
        self.count += count


class PcapLog:
    """Raw packets to capture.pcap; when it passes max_bytes it becomes capture.pcap.1 (keeping
    `keep` old files) and a new one starts; a capture.pcap found at start is rotated the same way.
    Packets are buffered, a block at a time, and written at least every flush_interval seconds,
    whole records only.
    Frames of another link type than the first go to a file of their own,
    capture-linktype<N>.pcap. A packet stamped past 2^32 s (which pcap cannot hold) or that cannot
    be written is counted in `lost`."""

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
        self.lost = LostEntries(path.name)
        self.others: dict[int, PcapLog] = {}
        self.buffer: list[bytes | memoryview] = []
        self.buffered = self.buffered_bytes = 0
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link: refusing to write through it")
        if path.exists() and path.stat().st_size > PCAP_HEADER.size:
            self._shift()  # an earlier run's packets: keep them
        self._open()

    def _open(self) -> None:
        self.fd = private_fd(self.path, os.O_WRONLY | os.O_TRUNC)
        self.size = 0  # bytes in the file; the header is written with the first packets
        self.last_flush = time.monotonic()

    def write_block(self, block: Block) -> None:
        """Append a block's frames, each to the file of its link type."""
        data = memoryview(block.data)
        for start, size, linktype, ts in zip(
            block.offsets, block.lengths, block.linktypes, block.ts
        ):
            target = self if linktype == self.linktype else self._other(linktype)
            target._append(data[start : start + size], ts)
        for target in (self, *self.others.values()):
            target._flush_if_due()

    def _other(self, linktype: int) -> PcapLog:
        """The log of frames of another link type than this one's (made on first use)."""
        other = self.others.get(linktype)
        if other is None:
            path = self.path.with_name(f"{self.path.stem}-linktype{linktype}{self.path.suffix}")
            other = self.others[linktype] = PcapLog(
                path, linktype, self.max_bytes, self.keep, self.flush_interval
            )
        return other

    def _append(self, frame: memoryview, ts: float) -> None:
        """Buffer one record (rotating first if it fills the file), or count it lost."""
        sec = int(ts)
        usec = min(round((ts - sec) * 1e6), 999_999)
        if not 0 <= sec <= MAX_SECONDS:
            self.lost.add(1, f"a packet stamped {ts:.0f} s, past what pcap can hold")
            return
        self.buffer += (PCAP_RECORD.pack(sec, usec, len(frame), len(frame)), frame)
        self.buffered += 1
        self.buffered_bytes += PCAP_RECORD.size + len(frame)
        if self.size + self.buffered_bytes >= self.max_bytes:
            self.flush()
            self._rotate()

    def _flush_if_due(self) -> None:
        if (
            self.buffered_bytes >= FLUSH_BYTES
            or time.monotonic() - self.last_flush >= self.flush_interval
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered packets (with the file's header, if it has none yet)."""
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        header = (
            [] if self.size else [PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, self.linktype)]
        )
        data = b"".join(header + self.buffer)
        error = write_all(self.fd, data, self.size)
        if error is None:
            self.size += len(data)
            self.written += self.buffered
        else:
            self.lost.add(self.buffered, str(error))
        self.buffer, self.buffered, self.buffered_bytes = [], 0, 0

    @property
    def written_all(self) -> int:
        """Frames written to every file, of every link type."""
        return self.written + sum(other.written for other in self.others.values())

    @property
    def lost_all(self) -> int:
        """Frames not written, of every link type."""
        return self.lost.count + sum(other.lost.count for other in self.others.values())

    def _shift(self) -> None:
        """capture.pcap becomes capture.pcap.1, .1 becomes .2 and so on (the oldest goes)."""
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    def _rotate(self) -> None:
        os.close(self.fd)
        self._shift()
        self._open()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
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


class TextLog:
    """A log appended to a batch of lines at a time (a batch that cannot be written is left out
    whole, and counted in `lost`). A last line cut short by a crash is ended first."""

    def __init__(self, path: Path) -> None:
        self.fd = private_fd(path, os.O_RDWR | os.O_APPEND)
        self.lost = LostEntries(path.name)
        end = os.lseek(self.fd, 0, os.SEEK_END)
        if end and os.pread(self.fd, 1, end - 1) != b"\n":
            self.write(["\n"])

    def write(self, lines: list[str]) -> None:
        error = write_all(self.fd, "".join(lines).encode(), os.lseek(self.fd, 0, os.SEEK_END))
        if error is not None:
            self.lost.add(len(lines), str(error))

    def close(self) -> None:
        os.close(self.fd)


class FlowLogs:
    """traffic.txt and flows.jsonl, one entry per classified connection."""

    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self.text = TextLog(directory / "traffic.txt")
        self.jsonl = TextLog(directory / "flows.jsonl")

    def write_batch(self, records: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
        """Log a classified batch, so the files are complete at every batch boundary."""
        pairs = list(zip(records, verdicts))
        self.text.write([traffic_line(record, verdict) for record, verdict in pairs])
        self.jsonl.write(
            [
                json.dumps(dict(record, verdict=verdict), separators=(",", ":")) + "\n"
                for record, verdict in pairs
            ]
        )

    def lost(self) -> dict[str, int]:
        """Flows not written, per log."""
        return {
            "flows_not_logged_jsonl": self.jsonl.lost.count,
            "flows_not_logged_txt": self.text.lost.count,
        }

    def close(self) -> None:
        self.text.close()
        self.jsonl.close()
