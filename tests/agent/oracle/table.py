"""The connection table: packets in, finished connections out.

Connections end when TCP closes (both FINs or a reset, then `tcp_closed` seconds for stragglers), when they go idle past their timeout,
when the table is full (the least recently active half-open attempt is evicted first, then the
least recently active connection; each eviction is counted and the connection still emitted),
or at the end of input. ICMP messages are connections of one packet, as in NSL-KDD.
Payload kept for content inspection is capped per connection (CONTENT_CAP each way) and in total
(`Limits.payload`, 64 MiB by default: bytes past it are counted, not kept).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from capture_agent.extractor import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, Limits, Timeouts
from tests.agent.oracle.connection import Connection, PayloadBudget
from tests.agent.oracle.decode import ACK, ICMP, ICMPV6, SYN, TCP, Packet
from tests.agent.oracle.fragments import FragmentTracker

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUTS", "ConnectionTable", "Limits", "Timeouts"]


class ConnectionTable:
    """Tracks live connections and yields them when they end."""

    def __init__(
        self, timeouts: Timeouts = DEFAULT_TIMEOUTS, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.timeouts = timeouts
        self.max_connections = limits.connections
        self.payload = PayloadBudget(limits.payload)
        self.attempts: OrderedDict[tuple, Connection] = OrderedDict()
        self.active: OrderedDict[tuple, Connection] = OrderedDict()
        self.udp: OrderedDict[tuple, Connection] = OrderedDict()
        self.closing: OrderedDict[tuple, Connection] = OrderedDict()
        self.fragments = FragmentTracker(timeouts.icmp_fragments)
        self.evicted = 0
        self.next_sweep = 0.0

    def __len__(self) -> int:
        return len(self.attempts) + len(self.active) + len(self.udp) + len(self.closing)

    def add(self, pkt: Packet) -> Iterator[Connection]:
        """Account one packet; yields connections that ended because of it or of time passing."""
        if pkt.ts >= self.next_sweep:
            yield from self.expire(pkt.ts)
            self.next_sweep = pkt.ts + self.timeouts.sweep_interval
        faults = 0
        if pkt.is_fragment:
            datagram, faults = self.fragments.add(pkt)
            if not pkt.frag_offset:
                datagram.conn_key = self._key(pkt)
        proto = pkt.proto
        if pkt.frag_offset:  # no transport header: only faults, for the first fragment's connection
            yield from self._later_fragment(pkt, datagram, faults)
        elif proto == TCP:
            yield from self._tcp(pkt, faults)
        elif proto in (ICMP, ICMPV6) and not pkt.is_fragment:
            conn = Connection((pkt.src, pkt.dst, proto), pkt, self.payload)
            conn.add(pkt, True)
            yield conn
        else:
            yield from self._datagram(pkt, faults)
        if len(self) > self.max_connections:
            yield self._evict()

    def _key(self, pkt: Packet) -> tuple:
        if pkt.proto in (ICMP, ICMPV6):
            return (pkt.src, pkt.dst, pkt.proto, pkt.ip_id)
        return (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto)

    def _tcp(self, pkt: Packet, faults: int) -> Iterator[Connection]:
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport, TCP)
        rkey = (pkt.dst, pkt.dport, pkt.src, pkt.sport, TCP)
        conn, from_orig, table = self._find(key, rkey, self.attempts, self.active, self.closing)
        if conn is not None and table is self.closing and pkt.flags & (SYN | ACK) == SYN:
            del self.closing[conn.key]  # the port pair is reused by a new connection
            yield conn
            conn = None
        if conn is None:
            flipped = pkt.flags & (SYN | ACK) == (SYN | ACK)
            conn = Connection(rkey if flipped else key, pkt, self.payload, flipped)
            from_orig = not flipped
            table = self.attempts if pkt.flags & SYN and not flipped else self.active
            table[conn.key] = conn
        else:
            table.move_to_end(conn.key)
        was_established = conn.established
        conn.add(pkt, from_orig)
        conn.wrong_fragment += faults
        if table is not self.closing and conn.finished:
            del table[conn.key]
            self.closing[conn.key] = conn
        elif table is self.attempts and conn.established and not was_established:
            del self.attempts[conn.key]
            self.active[conn.key] = conn

    def _later_fragment(self, pkt: Packet, datagram, faults: int) -> Iterator[Connection]:
        """A fragment after the first adds its faults (not its bytes: NSL-KDD counts a fragmented
        datagram by its first fragment, e.g. 1480 bytes for every ping of death) to the first
        fragment's connection; it becomes a connection of its own if that was never seen."""
        key = datagram.conn_key
        if key is None:
            key = datagram.conn_key = self._key(pkt)
        rkey = (key[2], key[3], key[0], key[1], key[4]) if len(key) == 5 else key
        conn, _, table = self._find(key, rkey, self.attempts, self.active, self.closing, self.udp)
        if conn is None:
            conn = Connection(key, pkt, self.payload)
            table = self.udp
            table[key] = conn
        else:
            table.move_to_end(conn.key)  # its idle time restarts: a fresh head must not pin it
        conn.wrong_fragment += faults
        conn.last = pkt.ts
        if pkt.proto in (ICMP, ICMPV6) and not pkt.more_fragments and table is self.udp:
            del self.udp[conn.key]  # the datagram's last fragment ends the ICMP message
            yield conn

    def _datagram(self, pkt: Packet, faults: int) -> Iterator[Connection]:
        conn_key = self._key(pkt)
        rkey = (
            (conn_key[2], conn_key[3], conn_key[0], conn_key[1], conn_key[4])
            if len(conn_key) == 5
            else conn_key
        )
        conn, from_orig, _ = self._find(conn_key, rkey, self.udp)
        if conn is None:
            conn = Connection(conn_key, pkt, self.payload)
            from_orig = True
            self.udp[conn_key] = conn
        else:
            self.udp.move_to_end(conn.key)
        conn.add(pkt, from_orig)
        conn.wrong_fragment += faults
        if (
            pkt.proto in (ICMP, ICMPV6) and not pkt.more_fragments
        ):  # an unfragmented ICMP message ends at once
            del self.udp[conn.key]
            yield conn

    @staticmethod
    def _find(
        key: tuple, rkey: tuple, *tables: OrderedDict
    ) -> tuple[Connection | None, bool, OrderedDict | None]:
        for table in tables:
            conn = table.get(key)
            if conn is not None:
                return conn, conn.key == key, table
            conn = table.get(rkey)
            if conn is not None:
                return conn, conn.key == key, table
        return None, True, None

    def expire(self, now: float) -> Iterator[Connection]:
        """Yield connections idle past their timeout; forget closed ones past the linger."""
        t = self.timeouts
        tables = (
            (self.closing, t.tcp_closed),
            (self.attempts, t.tcp_attempt),
            (self.active, t.tcp_established),
            (self.udp, t.udp),
        )
        for table, timeout in tables:
            while table:
                conn = next(iter(table.values()))
                if now - conn.last <= timeout:
                    break
                del table[conn.key]
                yield conn
        self.fragments.expire(now)

    def _evict(self) -> Connection:
        self.evicted += 1
        for table in (self.closing, self.attempts, self.udp, self.active):
            if table:
                _, conn = table.popitem(last=False)
                return conn
        raise RuntimeError("connection table over capacity but empty")

    def flush(self) -> Iterator[Connection]:
        """Yield every connection still open, oldest first (end of a pcap, shutdown)."""
        tables = (self.closing, self.attempts, self.active, self.udp)
        remaining = [conn for table in tables for conn in table.values()]
        for table in tables:
            table.clear()
        yield from sorted(remaining, key=lambda c: c.last)
