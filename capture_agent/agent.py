"""`desy-agent run`: capture → connections → features → server, with local logs.

Three threads, so the capture is never held up: the reader drains the socket (or pcap) into a
queue and writes capture.pcap; the main thread turns frames into connection records; the
sender batches records to the server and writes traffic.txt / flows.jsonl as verdicts arrive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from capture_agent.client import ClassifyClient, Sender, Spool
from capture_agent.extractor import Extractor
from capture_agent.logs import FlowLogs, PcapLog

log = logging.getLogger("desy.agent")
REPORT_INTERVAL = 10.0  # seconds between progress lines


@dataclass
class RunConfig:
    log_dir: Path
    agent_id: str
    server: str
    token: str | None
    batch_size: int = 256
    batch_interval: float = 1.0
    spool_max_bytes: int = 256 * 2**20
    pcap_max_bytes: int = 100 * 2**20
    drain_timeout: float = 10.0
    queue_size: int = 200_000  # frames waiting for the feature thread (10 s at 20k packets/s)


class Agent:
    """Runs one capture source to completion (end of pcap, or stop())."""

    def __init__(self, config: RunConfig, extractor: Extractor, live: bool = False) -> None:
        self.config = config
        self.live = live
        self.extractor = extractor
        self.frames: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.queue_dropped = 0
        self.stopping = threading.Event()
        self.reader_done = threading.Event()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.flow_logs = FlowLogs(config.log_dir)
        self.client = ClassifyClient(config.server, config.token)
        self.sender = Sender(self.client, Spool(config.log_dir / "spool", config.spool_max_bytes), self.flow_logs.write_batch,
                             config.batch_size, config.batch_interval)
        self.pcap_log: PcapLog | None = None

    def stop(self) -> None:
        self.stopping.set()

    def run(self, source: Iterator[tuple[bytes, int, float]]) -> dict[str, Any]:
        """Process the source until it ends or stop() is called; returns the exit counters."""
        self.sender.start()
        reader = threading.Thread(target=self._read, args=(source,), name="desy-reader", daemon=True)
        reader.start()
        last_tick = last_report = time.monotonic()
        while not (self.reader_done.is_set() and self.frames.empty()):
            try:
                frame, linktype, ts = self.frames.get(timeout=0.5)
            except queue.Empty:
                frame = None
            if frame is not None:
                self._emit(self.extractor.feed(frame, linktype, ts))
            if self.live and time.monotonic() - last_tick >= 1.0:  # idle timeouts on a quiet link
                last_tick = time.monotonic()
                self._emit(self.extractor.tick(time.time()))
            if time.monotonic() - last_report >= REPORT_INTERVAL:
                last_report = time.monotonic()
                self._report()
        self._emit(self.extractor.finish())
        reader.join()
        self.sender.close(self.config.drain_timeout)
        if self.pcap_log:
            self.pcap_log.close()
        self.flow_logs.close()
        self.client.close()
        return self.summary()

    def _read(self, source: Iterator[tuple[bytes, int, float]]) -> None:
        try:
            for frame, linktype, ts in source:
                if self.pcap_log is None:
                    self.pcap_log = PcapLog(self.config.log_dir / "capture.pcap", linktype, self.config.pcap_max_bytes)
                self.pcap_log.write(frame, linktype, ts)
                try:
                    self.frames.put_nowait((frame, linktype, ts))
                except queue.Full:
                    self.queue_dropped += 1
                if self.stopping.is_set():
                    break
        except Exception:
            log.exception("capture source failed")
        finally:
            self.reader_done.set()

    def _report(self) -> None:
        """A progress line: packets, connections, verdicts so far."""
        c, sent = self.extractor.counters, self.sender.counters
        log.info("%d packets, %d connections, %d classified, %d spooled, %d frames queued",
                 c.packets_seen, c.connections_emitted, sent.flows_classified, sent.flows_spooled, self.frames.qsize())

    def _emit(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            record["agent_id"] = self.config.agent_id
            self.sender.submit(record)

    def summary(self) -> dict[str, Any]:
        counters = asdict(self.extractor.counters)
        counters.pop("malformed_reasons")
        counters["packets_queue_dropped"] = self.queue_dropped
        counters["packets_written_pcap"] = self.pcap_log.written if self.pcap_log else 0
        counters["packets_pcap_other_linktype"] = self.pcap_log.skipped if self.pcap_log else 0
        return counters | asdict(self.sender.counters)
