"""Frames in, connection records out.

Two stages: the Tracker (decoding and the connection table) turns frames into Finished
connections; the feature plugins (capture_agent.features) turn those into rows. `Extractor`
runs both in one thread; `extract_file` can run the tracker in a second process so that a
pcap is read on both cores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

from capture_agent.blocks import Block
from capture_agent.extractor import Counters
from tests.agent.oracle.connection import Finished, as_finished
from tests.agent.oracle.decode import Malformed, decode
from tests.agent.oracle.features import RowBuilder
from tests.agent.oracle.pcap import frames
from tests.agent.oracle.table import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUTS,
    ConnectionTable,
    Limits,
    Timeouts,
)

BATCH = 2048
#: Payload bytes per batch at most (about): a batch is pickled whole to the parent process.
BATCH_PAYLOAD = 8 * 1024 * 1024


class Tracker:
    """Decoding and connection tracking: frames in time order → ended connections."""

    def __init__(
        self, timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.table = ConnectionTable(timeouts, limits)
        self.counters = Counters()
        self.latest = float("-inf")

    def feed(self, frame: bytes, linktype: int, ts: float) -> list[Finished]:
        counters = self.counters
        counters.packets_seen += 1
        if ts < self.latest:  # a clock step back: durations and windows must not go negative
            counters.packets_time_backwards += 1
            ts = self.latest
        else:
            self.latest = ts
        try:
            pkt = decode(frame, linktype, ts)
        except (Malformed, IndexError) as err:
            counters.packets_malformed += 1
            reason = str(err) if isinstance(err, Malformed) else "truncated header"
            counters.malformed_reasons[reason] = counters.malformed_reasons.get(reason, 0) + 1
            return []
        if pkt is None:
            counters.packets_not_ip += 1
            return []
        counters.packets_parsed += 1
        ended = [conn.finish() for conn in self.table.add(pkt)]
        counters.connections_emitted += len(ended)
        counters.connections_evicted = self.table.evicted
        counters.payload_bytes_over_budget = self.table.payload.refused
        return ended

    def tick(self, now: float) -> list[Finished]:
        ended = [conn.finish() for conn in self.table.expire(now)]
        self.counters.connections_emitted += len(ended)
        return ended

    def finish(self) -> list[Finished]:
        ended = [conn.finish() for conn in self.table.flush()]
        self.counters.connections_emitted += len(ended)
        return ended


class Extractor:
    """Both stages in the calling thread: feed frames in time order, collect the rows
    (desy.records.ROW_FIELDS order) of connections as they end."""

    def __init__(
        self, timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.tracker = Tracker(timeouts, limits)
        self.rows = RowBuilder()

    @property
    def counters(self) -> Counters:
        return self.tracker.counters

    def feed(self, frame: bytes, linktype: int, ts: float) -> list[tuple]:
        """Process one captured frame; returns the rows of connections that ended."""
        return self._rows(self.tracker.feed(frame, linktype, ts))

    def feed_block(self, block: Block) -> list[tuple]:
        """Process a block of frames; returns the rows of connections that ended."""
        feed, rows = self.tracker.feed, []
        for frame, linktype, ts in block.frames():
            rows += self._rows(feed(frame, linktype, ts))
        return rows

    def tick(self, now: float) -> list[tuple]:
        """Rows of connections idle past their timeout at time now (for a quiet live link)."""
        return self._rows(self.tracker.tick(now))

    def finish(self) -> list[tuple]:
        """Rows of every connection still open (end of input or shutdown)."""
        return self._rows(self.tracker.finish())

    def _rows(self, ended: list[Finished]) -> list[tuple]:
        row = self.rows.row
        return [row(conn) for conn in ended]


def _track_file(path: Path, timeouts: Timeouts, limits: Limits, pipe) -> None:
    """Child process: read and track path, sending batches of plain tuples, then the counters."""
    try:
        for batch, packets in _tracked_batches(path, timeouts, limits):
            pipe.send(([tuple(conn) for conn in batch], packets))
    except Exception as err:  # noqa: BLE001 (any failure is reported in the parent, which raises it)
        pipe.send(err)
    finally:
        pipe.close()


def _tracked_batches(
    path: Path, timeouts: Timeouts, limits: Limits
) -> Iterator[tuple[list, int | Counters]]:
    """(ended connections, packets read so far) in batches of at most BATCH connections and
    about BATCH_PAYLOAD payload bytes; the last item carries the Counters."""
    tracker = Tracker(timeouts, limits)
    batch: list[Finished] = []
    payload = 0
    for frame, linktype, ts in frames(path):
        for conn in tracker.feed(frame, linktype, ts):
            batch.append(conn)
            payload += len(conn.orig_payload) + len(conn.resp_payload)
            if len(batch) >= BATCH or payload >= BATCH_PAYLOAD:
                yield batch, tracker.counters.packets_seen
                batch, payload = [], 0
    for conn in tracker.finish():
        batch.append(conn)
        payload += len(conn.orig_payload) + len(conn.resp_payload)
        if len(batch) >= BATCH or payload >= BATCH_PAYLOAD:
            yield batch, tracker.counters.packets_seen
            batch, payload = [], 0
    yield batch, tracker.counters


def _received_batches(
    path: Path, timeouts: Timeouts, limits: Limits
) -> Iterator[tuple[list, int | Counters]]:
    """The same batches, tracked by a child process (fork) while the caller computes features."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_track_file, args=(path, timeouts, limits, sender), daemon=True)
    child.start()
    sender.close()
    try:
        while True:
            message = receiver.recv()
            if isinstance(message, Exception):
                raise message
            batch, progress = message
            yield [as_finished(values) for values in batch], progress
            if isinstance(progress, Counters):
                return
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()


def extract_file(
    path: Path,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    limits: Limits = DEFAULT_LIMITS,
    parallel: bool = True,
) -> Iterator[tuple[list[tuple], int | Counters]]:
    """Rows (desy.records.ROW_FIELDS order) of a capture file in batches, each with the packets
    read so far; the last batch comes with the final Counters instead.

    parallel: track connections in a child process while this one computes features.
    """
    row = RowBuilder().row
    batches = _received_batches if parallel else _tracked_batches
    for batch, progress in batches(path, timeouts, limits):
        yield [row(conn) for conn in batch], progress
