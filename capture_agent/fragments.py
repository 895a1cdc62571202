"""IP fragment bookkeeping: which connection a fragment belongs to and `wrong_fragment`.

A fragment counts once for each of these faults (derived from the dataset: teardrop records
carry wrong_fragment 3, ping-of-death records 1):
- it overlaps data already received for the same datagram;
- it lies entirely inside data already received (reassembly would give a negative length);
- it is the last fragment yet ends before data already received;
- it pushes the datagram past 65,535 bytes (ping of death).
A non-last fragment whose length is not a multiple of 8 is not counted: teardrop's first fragment
is such (36 bytes), and counting it would give 4 where the dataset has 3.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from capture_agent.decode import Packet

MAX_DATAGRAM = 65535


@dataclass
class Datagram:
    """Fragments seen so far of one (src, dst, proto, id) datagram."""

    ranges: list[tuple[int, int]] = field(default_factory=list)
    conn_key: tuple | None = None
    last_seen: float = 0.0


class FragmentTracker:
    """Bounded map of datagrams under reassembly, expired after `timeout` seconds."""

    def __init__(self, timeout: float = 30.0, max_datagrams: int = 65536) -> None:
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.datagrams: OrderedDict[tuple, Datagram] = OrderedDict()

    def add(self, pkt: Packet) -> tuple[Datagram, int]:
        """Record a fragment; returns its datagram and how many faults it shows."""
        key = (pkt.src, pkt.dst, pkt.proto, pkt.ip_id)
        datagram = self.datagrams.get(key)
        if datagram is None:
            datagram = self.datagrams[key] = Datagram()
            if len(self.datagrams) > self.max_datagrams:
                self.datagrams.popitem(last=False)
        else:
            self.datagrams.move_to_end(key)
        datagram.last_seen = pkt.ts
        start = pkt.frag_offset
        end = start + (len(pkt.payload) if start else pkt.ip_payload_len)
        limit = MAX_DATAGRAM - (20 if pkt.version == 4 else 0)  # IPv4 counts its header in the 65,535
        faults = self._faults(datagram, start, end, pkt.more_fragments, limit)
        datagram.ranges.append((start, end))
        return datagram, faults

    @staticmethod
    def _faults(datagram: Datagram, start: int, end: int, more: bool, limit: int) -> int:
        faults = 0
        if any(start < r_end and r_start < end for r_start, r_end in datagram.ranges):
            faults += 1
        if any(r_start <= start and end <= r_end for r_start, r_end in datagram.ranges):
            faults += 1
        if not more and datagram.ranges and end < max(r_end for _, r_end in datagram.ranges):
            faults += 1
        if end > limit:
            faults += 1
        return faults

    def expire(self, now: float) -> None:
        """Forget datagrams idle for longer than the timeout."""
        while self.datagrams:
            key, datagram = next(iter(self.datagrams.items()))
            if now - datagram.last_seen <= self.timeout:
                break
            del self.datagrams[key]
