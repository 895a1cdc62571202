"""`desy-agent run`: capture → connections → features → server, with local logs.

Two processes, so that neither the capture nor the features wait on HTTP or log writing:
- this process: a reader thread drains the capture ring (or pcap) into a queue of blocks of frames
  and writes capture.pcap; the main thread turns blocks into connection rows and sends them, in
  lists, to
- the sender process, which batches them to the server (spooling when it is down) and writes
  traffic.txt and flows.jsonl as verdicts arrive.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from capture_agent.backlog import Backlog
from capture_agent.blocks import Block
from capture_agent.client import ClassifyClient
from capture_agent.extractor import Extractor
from capture_agent.logs import FlowLogs, PcapLog, private_dir
from capture_agent.pcap import CaptureFileError
from capture_agent.sender import TALLIES, Orphaned, SendCounters, Sender
from capture_agent.spool import Spool

log = logging.getLogger("desy.agent")
REPORT_INTERVAL = 10.0  # seconds between progress lines
PR_SET_PDEATHSIG = 1  # prctl(2)
ROWS_PER_MESSAGE = 256  # rows sent to the sender process at a time (or every 0.2 s)
REPORT_GRACE = 120.0  # seconds past the drain timeout the sender has to report at exit
REPLAY_BLOCK = 512  # frames per block read from a pcap (capture_agent.pcap.blocks)
REPLAY_AHEAD = 20  # blocks a pcap replay reads ahead of the features


@dataclass
class RunConfig:
    log_dir: Path
    agent_id: str
    server: str
    token: str | None
    ca_cert: Path | None = None
    batch_size: int = 256
    batch_interval: float = 1.0
    spool_max_bytes: int = 256 * 2**20
    pcap_max_bytes: int = 100 * 2**20
    drain_timeout: float = 10.0
    queue_size: int = 200_000  # live: frames waiting for the feature thread (10 s at 20k packets/s)
    pending_messages: int = 400  # lists of rows waiting for the sender process (~100k flows)
    backlog_max_bytes: int = 1024 * 2**20  # live: rows waiting on disk while the sender is behind
    capture: str = ""  # the interface or pcap file, told to the server with the log directory


def _sender_main(config: RunConfig, inbox: Any, results: Any, tally: Any) -> None:
    """The sender process: classify rows from inbox, log verdicts, report counters on results
    (also when it fails: then with sender_error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent(parent=os.getppid())
    counters, flow_logs, client = SendCounters(), None, None
    try:
        flow_logs = FlowLogs(config.log_dir)
        client = ClassifyClient(
            config.server,
            config.token,
            ca_cert=config.ca_cert,
            source=(config.capture, str(config.log_dir.resolve())),
        )
        sender = Sender(
            client,
            Spool(config.log_dir / "spool", config.spool_max_bytes),
            flow_logs.write_batch,
            inbox,
            config.agent_id,
            config.batch_size,
            config.batch_interval,
            tally=tally,
        )
        counters = sender.counters
        sender.run(config.drain_timeout)
    except Exception as err:  # noqa: BLE001 (whatever it is, the agent must hear of it)
        counters.sender_error = f"{type(err).__name__}: {err}"
        log.error("the sender failed: %s", counters.sender_error)
    finally:
        if flow_logs is not None:
            flow_logs.close()
        if client is not None:
            client.close()
    results.send(asdict(counters) | (flow_logs.lost() if flow_logs else {}))


def _exit_with_parent(parent: int) -> None:
    """Have the kernel signal this process when the main process dies (even by kill -9): the
    handler raises Orphaned, so the sender spools what it holds and exits."""

    def orphaned(*_: Any) -> None:
        raise Orphaned

    signal.signal(signal.SIGUSR1, orphaned)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    if os.getppid() != parent:  # it died before the request took effect
        raise Orphaned


class Agent:
    """Runs one capture source to completion (end of pcap, or stop())."""

    def __init__(self, config: RunConfig, extractor: Extractor, live: bool = False) -> None:
        self.config = config
        self.live = live
        self.extractor = extractor
        # Live capture never waits: a block that would take the queue past queue_size frames is
        # dropped and its frames counted. A pcap replay waits instead (nothing is lost) and reads
        # only a little ahead.
        self.blocks: queue.Queue = queue.Queue(maxsize=0 if live else REPLAY_AHEAD)
        self.frames_queued = self.frames_taken = 0  # each written by one thread only
        self.queue_dropped = 0
        self.capture_error = ""
        self.stopping = threading.Event()
        self.reader_done = threading.Event()
        private_dir(config.log_dir)
        context = multiprocessing.get_context("fork")
        self.outbox = context.Queue(maxsize=config.pending_messages)
        self.results, results = context.Pipe(duplex=False)
        self.tally = context.Array("q", len(TALLIES), lock=False)  # written by the sender only
        self.sender = context.Process(
            target=_sender_main,
            args=(config, self.outbox, results, self.tally),
            name="desy-sender",
            daemon=True,
        )
        self.pending: list[tuple] = []
        self.backlog = Backlog(config.log_dir, config.backlog_max_bytes)
        self.rows_shed = 0
        self.shed_logged = float("-inf")
        self.sent_at = time.monotonic()
        self.send_counters: dict[str, Any] = {}
        self.sender_gone = False
        self.pcap_log: PcapLog | None = None

    def stop(self) -> None:
        self.stopping.set()

    def run(self, source: Iterator[Block]) -> dict[str, Any]:
        """Process the source until it ends or stop() is called; returns the exit counters."""
        self.sender.start()  # forked before any thread of ours exists
        reader = threading.Thread(
            target=self._read, args=(source,), name="desy-reader", daemon=True
        )
        reader.start()
        last_tick = last_check = last_report = time.monotonic()
        while not (self.reader_done.is_set() and self.blocks.empty()):
            try:
                block = self.blocks.get(timeout=0.2)
            except queue.Empty:
                block = None
            if block is not None:
                self.frames_taken += len(block)
                self._emit(self.extractor.feed_block(block))
            now = time.monotonic()
            if self.live and now - last_tick >= 1.0:  # idle timeouts on a quiet link
                last_tick = now
                self._emit(self.extractor.tick(time.time()))
            if (self.pending or self.backlog) and now - self.sent_at >= 0.2:
                self._flush()
            if now - last_check >= 1.0:
                last_check = now
                self._check_sender()
            if now - last_report >= REPORT_INTERVAL:
                last_report = now
                self._report()
        self._emit(self.extractor.finish())
        if self.backlog:
            log.info(
                "%d flows wait for the sender: handing them over before exit", len(self.backlog)
            )
        self._flush(final=True)
        if self.rows_shed:
            log.error(
                "%d flows did not fit in the backlog while the sender was behind (counted in "
                "flows_lost)",
                self.rows_shed,
            )
        self.backlog.close()
        reader.join()
        if self.pcap_log:
            self.pcap_log.close()
        self._hand(None)
        self.send_counters = self._report_of_sender()
        return self.summary()

    def _hand(self, item: list[tuple] | None) -> None:
        """Put item in the sender's inbox, waiting while the sender is alive and behind."""
        while not self.sender_gone:
            try:
                self.outbox.put(item, timeout=0.5)
                return
            except queue.Full:
                self._check_sender()

    def _check_sender(self) -> None:
        """If the sender process has ended, stop the capture: what it did not take is lost."""
        if self.sender_gone or self.sender.is_alive():
            return
        self.sender_gone = True
        self.outbox.cancel_join_thread()  # nobody reads it: do not wait on it at exit
        log.error("the sender process has stopped: ending the run (flows not sent are lost)")
        self.stop()

    def _report_of_sender(self) -> dict[str, Any]:
        """The sender's counters once it has drained (it is killed if it does not report in
        time); if it ended without reporting, what it last tallied."""
        deadline = time.monotonic() + self.config.drain_timeout + REPORT_GRACE
        while not self.results.poll(0.5):  # a report, or the end of the pipe: the sender is gone
            if time.monotonic() > deadline:
                log.error("the sender process did not report in time: stopping it")
                self.sender.kill()
                break
        try:
            report = self.results.recv() if self.results.poll(0) else {}
        except EOFError:
            report = {}
        self.sender.join(timeout=30)
        self.outbox.cancel_join_thread()  # nothing more is read from it: never wait on it at exit
        return report or self._tally_of_dead_sender()

    def _tally_of_dead_sender(self) -> dict[str, Any]:
        """The counters of a sender that died without reporting: those it tallied, the flows
        left in the spool, and the rest lost (a batch classified just before it died included)."""
        error = f"it ended (exit code {self.sender.exitcode}) without reporting"
        log.error("the sender process failed: %s", error)
        counters = SendCounters(**dict(zip(TALLIES, self.tally)), sender_error=error)
        try:
            counters.flows_spooled = Spool(
                self.config.log_dir / "spool", self.config.spool_max_bytes
            ).flow_count()
        except OSError as err:
            log.error("cannot count the flows in the spool: %s", err)
        counters.flows_lost += max(0, counters.residual())
        return asdict(counters)

    def _read(self, source: Iterator[Block]) -> None:
        try:
            for block in source:
                if not len(block):
                    continue
                if self.pcap_log is None:
                    self.pcap_log = PcapLog(
                        self.config.log_dir / "capture.pcap",
                        block.linktypes[0],
                        self.config.pcap_max_bytes,
                    )
                self.pcap_log.write_block(block)
                self._queue(block)
                if self.stopping.is_set():
                    break
        except CaptureFileError as err:
            self.capture_error = str(err)
            log.error("%s", err)
        except Exception as err:
            self.capture_error = f"capture source failed: {err!r}"
            log.exception("capture source failed")
        finally:
            self.reader_done.set()

    def _queue(self, block: Block) -> None:
        """Queue block for the features (live: unless that passes queue_size frames)."""
        if (
            self.live
            and self.frames_queued + len(block) - self.frames_taken > self.config.queue_size
        ):
            self.queue_dropped += len(block)
            return
        self.frames_queued += len(block)
        self.blocks.put(block)

    def _report(self) -> None:
        """A progress line: packets and connections so far, frames and flows waiting."""
        c = self.extractor.counters
        log.info(
            "%d packets, %d connections, %d frames queued, %d frames dropped, %d flows waiting for "
            "the sender (%.0f MiB on disk)",
            c.packets_seen,
            c.connections_emitted,
            self.frames_queued - self.frames_taken,
            self.queue_dropped,
            len(self.backlog) + len(self.pending),
            self.backlog.bytes / 2**20,
        )

    def _emit(self, rows: list[tuple]) -> None:
        if rows:
            self.pending.extend(rows)
            if len(self.pending) >= ROWS_PER_MESSAGE:
                self._flush()

    def _flush(self, final: bool = False) -> None:
        """Hand the waiting rows to the sender process, oldest first, in messages of at most
        ROWS_PER_MESSAGE. A pcap replay (and the end of a run) waits while the sender is behind.
        Live capture never does: a packet not read is worse than a verdict late (it changes the
        features of the connections around it), so the rows wait in the disk backlog; those that
        do not fit are lost (counted in flows_lost)."""
        messages = [
            self.pending[i : i + ROWS_PER_MESSAGE]
            for i in range(0, len(self.pending), ROWS_PER_MESSAGE)
        ]
        self.pending = []
        if final or not self.live:
            while self.backlog:
                self._hand(self.backlog.first())
                self.backlog.drop_first()
            for message in messages:
                self._hand(message)
        else:
            self._hand_what_fits(messages)
        self.sent_at = time.monotonic()

    def _hand_what_fits(self, messages: list[list[tuple]]) -> None:
        """Live: the backlog's messages, then these, to the sender until its inbox is full; the
        rest of these go to the backlog."""
        try:
            while self.backlog:
                self.outbox.put_nowait(self.backlog.first())
                self.backlog.drop_first()
            while messages:
                self.outbox.put_nowait(messages[0])
                del messages[0]
        except queue.Full:
            for message in messages:
                self._to_backlog(message)

    def _to_backlog(self, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            if self.backlog.put(rows):
                return
            why = f"it is full ({self.config.backlog_max_bytes // 2**20} MiB)"
        except OSError as err:
            why = f"it cannot be written: {err}"
        self.rows_shed += len(rows)
        now = time.monotonic()
        if now - self.shed_logged >= REPORT_INTERVAL:
            self.shed_logged = now
            log.warning(
                "the sender is behind and the backlog refuses flows (%s): %d flows lost so far "
                "(capture goes on)",
                why,
                self.rows_shed,
            )

    def summary(self) -> dict[str, Any]:
        counters = asdict(self.extractor.counters)
        counters.pop("malformed_reasons")
        counters["packets_queue_dropped"] = self.queue_dropped
        counters["flows_backlogged"] = self.backlog.rows_total
        counters["flows_not_backlogged"] = self.rows_shed  # lost: the backlog was full
        counters["packets_written_pcap"] = self.pcap_log.written_all if self.pcap_log else 0
        counters["packets_not_logged"] = self.pcap_log.lost_all if self.pcap_log else 0
        counters["capture_error"] = self.capture_error
        send = dict(self.send_counters)
        if send:  # connections the sender never took are lost
            send["flows_lost"] += counters["connections_emitted"] - send["flows_received"]
        return counters | send
