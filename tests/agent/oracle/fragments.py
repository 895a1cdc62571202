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

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field

from capture_agent.extractor import MAX_DATAGRAM, MAX_DATAGRAMS, MAX_SPANS
from tests.agent.oracle.decode import Packet


@dataclass
class Datagram:
    """What fragments of one (src, dst, proto, id) datagram covered so far: sorted disjoint spans
    [starts[i], ends[i]) and the highest end."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    top: int = 0
    conn_key: tuple | None = None
    last_seen: float = 0.0

    def faults(self, start: int, end: int, more: bool, limit: int) -> int:
        """The faults of a fragment [start, end) against what came before (see module doc)."""
        i = bisect_right(self.starts, start) - 1  # the span starting at or before `start`
        overlaps = (i >= 0 and self.ends[i] > start) or (
            i + 1 < len(self.starts) and self.starts[i + 1] < end
        )
        inside = i >= 0 and end <= self.ends[i]
        short_last = not more and bool(self.starts) and end < self.top
        return int(overlaps) + int(inside) + int(short_last) + int(end > limit)

    def cover(self, start: int, end: int) -> None:
        """Merge [start, end) into the spans (touching spans merge)."""
        lo, hi = bisect_left(self.ends, start), bisect_right(self.starts, end)
        if lo < hi:
            start, end = min(start, self.starts[lo]), max(end, self.ends[hi - 1])
        elif len(self.starts) >= MAX_SPANS:
            return
        self.starts[lo:hi], self.ends[lo:hi] = [start], [end]
        self.top = max(self.top, end)


class FragmentTracker:
    """Bounded map of datagrams under reassembly, expired after `timeout` seconds."""

    def __init__(self, timeout: float = 30.0, max_datagrams: int = MAX_DATAGRAMS) -> None:
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
        limit = MAX_DATAGRAM - (
            20 if pkt.version == 4 else 0
        )  # IPv4 counts its header in the 65,535
        faults = datagram.faults(start, end, pkt.more_fragments, limit)
        datagram.cover(start, end)
        return datagram, faults

    def expire(self, now: float) -> None:
        """Forget datagrams idle for longer than the timeout."""
        while self.datagrams:
            key, datagram = next(iter(self.datagrams.items()))
            if now - datagram.last_seen <= self.timeout:
                break
            del self.datagrams[key]
