"""Frames in, connection records out: the native engine (capture_agent/_engine.c), configured.

The engine decodes each frame, tracks its connection and, when a connection ends, computes its
row: the 41 features (desy.records.ROW_FIELDS order), then the endpoints and times. What the rules
need from Python it takes from here once (timeouts, limits, the inspected ports, the error flags)
or asks as it goes (a service's name once per port, the content features per inspected
connection). Rules: docs/features.md.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from capture_agent._engine import FIELDS, Engine
from capture_agent.blocks import Block
from capture_agent.content import CONTENT_FEATURES, LOGGED_IN_ONLY, NO_CONTENT, content_values
from capture_agent.pcap import blocks
from capture_agent.services import service
from desy.records import ROW_FIELDS
from desy.schema import HOST_COUNT_CAP, WINDOW_COUNT_CAP

#: Payload bytes all open connections may keep for content inspection, together.
MAX_PAYLOAD = 64 * 1024 * 1024
#: Payload bytes kept each way for content inspection (capture_agent.content).
CONTENT_CAP = 32 * 1024
#: Responder ports whose payload is kept for content inspection, and the dialect spoken there.
CONTENT_PORTS: dict[int, str] = {
    21: "ftp",
    23: "telnet",
    25: "smtp",
    80: "http",
    110: "pop",
    143: "imap",
    512: "rsh",
    513: "rlogin",
    514: "rsh",
    8001: "http",
    2784: "http",
}
#: Flags whose connections count as "SYN errors" and "REJ errors" in the window rates.
#: From KDDTrain+: among records alone in their window (count == 1), serror_rate is 1 exactly for
#: S0, S1, S2, S3, SH and rerror_rate exactly for REJ, RSTO, RSTR, RSTOS0. RSTRH and SHR never
#: occur in the data; they are the responder-side twins of RSTOS0 and SH.
SERROR_FLAGS = frozenset({"S0", "S1", "S2", "S3", "SH", "SHR"})
RERROR_FLAGS = frozenset({"REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH"})
#: NSL-KDD's protocol_type by IP protocol number (anything else is counted as tcp).
PROTOCOL_NAMES = {
    socket.IPPROTO_TCP: "tcp",
    socket.IPPROTO_UDP: "udp",
    socket.IPPROTO_ICMP: "icmp",
    socket.IPPROTO_ICMPV6: "icmp",
}
#: The time window: connections that ended in the last TIME_WINDOW seconds.
TIME_WINDOW = 2.0
#: Destination hosts the host window remembers (the least recently seen forgotten first).
MAX_HOSTS = 65_536
#: IP datagrams under reassembly at once, and the disjoint spans remembered for each (past that a
#: crafted datagram's new gaps are checked for faults but not kept); the largest datagram.
MAX_DATAGRAMS = 16_384
MAX_SPANS = 64
MAX_DATAGRAM = 65_535


class SchemaMismatch(ValueError):
    """The engine does not write exactly the record's fields."""


def check_fields(fields: tuple[str, ...], content: tuple[str, ...]) -> None:
    """The engine's row layout must be desy.records.ROW_FIELDS, with the content values where it
    puts those of `content_values`."""
    if fields != ROW_FIELDS or fields[9:22] != content:
        raise SchemaMismatch(
            "the native engine's row does not match desy.records.ROW_FIELDS: "
            f"{[(a, b) for a, b in zip(fields, ROW_FIELDS) if a != b]}, content {content}"
        )


check_fields(FIELDS, tuple(CONTENT_FEATURES))


@dataclass(frozen=True)
class Timeouts:
    """Idle timeouts in seconds (trace time)."""

    tcp_attempt: float = 5.0  # SYN with no SYN-ACK yet (S0 candidates)
    tcp_established: float = 120.0  # established or midstream TCP
    tcp_closed: float = 2.0  # a closed connection still takes trailing ACKs this long
    udp: float = 30.0
    icmp_fragments: float = 30.0  # an ICMP datagram still being fragmented
    sweep_interval: float = 1.0


@dataclass(frozen=True)
class Limits:
    """State the table may hold: connections (past it the oldest are evicted, and counted) and
    payload bytes kept for content inspection by all connections together."""

    connections: int = 262_144
    payload: int = MAX_PAYLOAD


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_LIMITS = Limits()


@dataclass
class Counters:
    """What happened to the input, reported at exit."""

    packets_seen: int = 0
    packets_parsed: int = 0
    packets_malformed: int = 0
    packets_not_ip: int = 0
    connections_emitted: int = 0
    connections_evicted: int = 0
    payload_bytes_over_budget: int = 0  # not kept for content inspection: the budget was full
    packets_time_backwards: int = 0  # stamped earlier than a packet before them: taken as that time
    malformed_reasons: dict[str, int] = field(default_factory=dict)


def engine(timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS) -> Engine:
    """A native engine with these timeouts and limits and the rules of this module."""
    return Engine(
        {
            "tcp_attempt": timeouts.tcp_attempt,
            "tcp_established": timeouts.tcp_established,
            "tcp_closed": timeouts.tcp_closed,
            "udp": timeouts.udp,
            "icmp_fragments": timeouts.icmp_fragments,
            "sweep_interval": timeouts.sweep_interval,
            "time_window": TIME_WINDOW,
            "max_connections": limits.connections,
            "payload_limit": limits.payload,
            "content_cap": CONTENT_CAP,
            "content_ports": CONTENT_PORTS,
            "max_datagrams": MAX_DATAGRAMS,
            "max_spans": MAX_SPANS,
            "max_datagram": MAX_DATAGRAM,
            "max_hosts": MAX_HOSTS,
            "host_count_cap": HOST_COUNT_CAP,
            "window_count_cap": WINDOW_COUNT_CAP,
            "service": service,
            "content": content_values,
            "protocol_names": [PROTOCOL_NAMES.get(number, "tcp") for number in range(256)],
            "serror_flags": SERROR_FLAGS,
            "rerror_flags": RERROR_FLAGS,
            "no_content": NO_CONTENT,
            "logged_in_only": LOGGED_IN_ONLY,
        }
    )


class Extractor:
    """Feed frames in time order, collect the rows of connections as they end."""

    def __init__(
        self, timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.engine = engine(timeouts, limits)

    @property
    def counters(self) -> Counters:
        return Counters(**self.engine.counters())

    def feed(self, frame: bytes, linktype: int, ts: float) -> list[tuple]:
        """Process one captured frame; returns the rows of connections that ended."""
        return self.engine.feed(frame, linktype, ts)

    def feed_block(self, block: Block) -> list[tuple]:
        """Process a block of frames; returns the rows of connections that ended."""
        return self.engine.feed_block(
            block.data, block.offsets, block.lengths, block.linktypes, block.ts
        )

    def tick(self, now: float) -> list[tuple]:
        """Rows of connections idle past their timeout at time now (for a quiet live link)."""
        return self.engine.tick(now)

    def finish(self) -> list[tuple]:
        """Rows of every connection still open (end of input or shutdown)."""
        return self.engine.finish()


def extract_file(
    path: Path, timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS
) -> Iterator[tuple[list[tuple], int | Counters]]:
    """Rows of a capture file, a block at a time, each with the packets read so far; the last
    batch comes with the final Counters instead."""
    extractor = Extractor(timeouts, limits)
    packets = 0
    for block in blocks(path):
        packets += len(block)
        yield extractor.feed_block(block), packets
    yield extractor.finish(), extractor.counters
