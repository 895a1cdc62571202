"""Frames in, connection records out: decoding, the connection table and feature computation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from capture_agent.decode import Malformed, decode
from capture_agent.features import connection_record
from capture_agent.table import ConnectionTable, Timeouts
from capture_agent.windows import TrafficWindows


@dataclass
class Counters:
    """What happened to the input, reported at exit."""

    packets_seen: int = 0
    packets_parsed: int = 0
    packets_malformed: int = 0
    packets_not_ip: int = 0
    connections_emitted: int = 0
    connections_evicted: int = 0
    malformed_reasons: dict[str, int] = field(default_factory=dict)


class Extractor:
    """Stateful: feed frames in time order, collect records of connections as they end."""

    def __init__(self, timeouts: Timeouts = Timeouts(), max_connections: int = 262_144) -> None:
        self.table = ConnectionTable(timeouts, max_connections)
        self.windows = TrafficWindows()
        self.counters = Counters()

    def feed(self, frame: bytes, linktype: int, ts: float) -> list[dict[str, Any]]:
        """Process one captured frame; returns the records of connections that ended."""
        counters = self.counters
        counters.packets_seen += 1
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
        records = [self._record(conn) for conn in self.table.add(pkt)]
        counters.connections_evicted = self.table.evicted
        return records

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Records of connections idle past their timeout at time now (for a quiet live link)."""
        return [self._record(conn) for conn in self.table.expire(now)]

    def finish(self) -> list[dict[str, Any]]:
        """Records of every connection still open (end of input or shutdown)."""
        return [self._record(conn) for conn in self.table.flush()]

    def _record(self, conn) -> dict[str, Any]:
        self.counters.connections_emitted += 1
        return connection_record(conn, self.windows)
