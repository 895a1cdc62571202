"""One connection's state: endpoints, byte counts, TCP history and the Zeek/Bro `flag`."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from capture_agent.extractor import CONTENT_CAP, CONTENT_PORTS, RERROR_FLAGS, SERROR_FLAGS
from capture_agent.services import service
from tests.agent.oracle.decode import ACK, FIN, RST, SYN, TCP, URG, Packet

__all__ = ["CONTENT_CAP", "RERROR_FLAGS", "SERROR_FLAGS"]  # the rules' data is production's

# TCP history bits
O_SYN, R_SYNACK, O_FIN, R_FIN, O_RST, R_RST, O_SYNACK_FIRST = 1, 2, 4, 8, 16, 32, 64


class PayloadBudget:
    """Payload bytes that all open connections may keep for content inspection, together.

    Each inspected connection keeps at most CONTENT_CAP bytes each way; this caps the sum, so a
    flood of connections to inspected ports cannot exhaust memory. Bytes refused are counted.
    """

    __slots__ = ("held", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.limit, self.held, self.refused = limit, 0, 0

    def grant(self, wanted: int) -> int:
        """How many of `wanted` bytes may be kept (all, some or none); counts the rest."""
        granted = max(0, min(wanted, self.limit - self.held))
        self.held += granted
        self.refused += wanted - granted
        return granted


class Finished(NamedTuple):
    """An ended connection, as the feature plugins see it (plain values, cheap to pickle)."""

    proto: int
    orig: bytes
    resp: bytes
    orig_port: int
    resp_port: int
    start: float
    last: float
    orig_bytes: int
    resp_bytes: int
    flag: str
    service: str
    urgent: int
    wrong_fragment: int
    established: bool
    dialect: str | None
    orig_payload: bytes
    resp_payload: bytes


#: A Finished from its plain tuple, as sent between processes (C speed: no per-field checks).
as_finished = partial(tuple.__new__, Finished)


class Connection:
    """A TCP connection, a UDP conversation or one ICMP message (or fragmented datagram)."""

    __slots__ = (
        "budget",
        "dialect",
        "history",
        "icmp_code",
        "icmp_type",
        "key",
        "last",
        "orig",
        "orig_bytes",
        "orig_data",
        "orig_port",
        "proto",
        "resp",
        "resp_bytes",
        "resp_data",
        "resp_port",
        "seq_base",
        "seq_top",
        "start",
        "urgent",
        "version",
        "wrong_fragment",
    )

    def __init__(
        self, key: tuple, pkt: Packet, budget: PayloadBudget, flipped: bool = False
    ) -> None:
        self.key = key
        if flipped:
            self.orig, self.resp, self.orig_port, self.resp_port = (
                pkt.dst,
                pkt.src,
                pkt.dport,
                pkt.sport,
            )
        else:
            self.orig, self.resp, self.orig_port, self.resp_port = (
                pkt.src,
                pkt.dst,
                pkt.sport,
                pkt.dport,
            )
        self.proto, self.version = pkt.proto, pkt.version
        self.start = self.last = pkt.ts
        self.orig_bytes = self.resp_bytes = 0
        self.history = self.urgent = self.wrong_fragment = 0
        self.icmp_type, self.icmp_code = pkt.icmp_type, pkt.icmp_code
        self.seq_base: list[int | None] = [None, None]  # per direction: 0 originator, 1 responder
        self.seq_top: list[int | None] = [None, None]
        self.dialect = CONTENT_PORTS.get(self.resp_port) if self.proto == TCP else None
        self.orig_data: bytearray | None = bytearray() if self.dialect else None
        self.resp_data: bytearray | None = bytearray() if self.dialect else None
        self.budget = budget

    def add(self, pkt: Packet, from_orig: bool) -> None:
        """Account one packet sent by the originator (from_orig) or the responder."""
        self.last = pkt.ts
        if self.proto == TCP:
            new_bytes = self._tcp(pkt, from_orig)
        else:
            new_bytes = len(pkt.payload)
        if from_orig:
            self.orig_bytes += new_bytes
        else:
            self.resp_bytes += new_bytes
        if new_bytes and self.orig_data is not None:
            self._keep(pkt.payload[-new_bytes:], from_orig)

    def _tcp(self, pkt: Packet, from_orig: bool) -> int:
        flags = pkt.flags
        if flags & URG:
            self.urgent += 1
        if from_orig:
            if flags & SYN and not flags & ACK:
                self.history |= O_SYN
            if flags & FIN:
                self.history |= O_FIN
            if flags & RST and not self.history & (O_RST | R_RST) and not self._both_fins:
                self.history |= O_RST
        else:
            if flags & SYN:
                self.history |= R_SYNACK
            if flags & FIN:
                self.history |= R_FIN
            if flags & RST and not self.history & (O_RST | R_RST) and not self._both_fins:
                self.history |= R_RST
        return self._new_payload(pkt, from_orig)

    @property
    def _both_fins(self) -> bool:
        return self.history & (O_FIN | R_FIN) == (O_FIN | R_FIN)

    def _new_payload(self, pkt: Packet, from_orig: bool) -> int:
        """Growth of the direction's sequence-number span, as Bro/Zeek count bytes.

        Bytes = highest sequence number reached - initial sequence number, so retransmissions
        count once and out-of-order segments are counted when they arrive. Only segments with
        payload move the span (a stray RST's sequence number says nothing about data).
        """
        side = 0 if from_orig else 1
        seq = (pkt.seq + (1 if pkt.flags & SYN else 0)) & 0xFFFFFFFF
        base, top = self.seq_base[side], self.seq_top[side]
        if base is None:
            self.seq_base[side] = self.seq_top[side] = base = top = seq
        size = len(pkt.payload)
        if not size:
            return 0
        before = (top - base) & 0xFFFFFFFF
        if (
            0 < (base - seq) & 0xFFFFFFFF < 0x80000000
        ):  # earlier than anything seen (midstream start)
            base = seq
        end = (seq + size) & 0xFFFFFFFF
        if 0 < (end - top) & 0xFFFFFFFF < 0x80000000:
            top = end
        self.seq_base[side], self.seq_top[side] = base, top
        return ((top - base) & 0xFFFFFFFF) - before

    def _keep(self, data: bytes, from_orig: bool) -> None:
        buffer = self.orig_data if from_orig else self.resp_data
        room = CONTENT_CAP - len(buffer)
        if room > 0:
            buffer += data[: self.budget.grant(min(room, len(data)))]

    def finish(self) -> Finished:
        """Freeze the ended connection, with its flag and captured payload (whose buffers are
        released and their bytes given back to the budget)."""
        orig_payload = resp_payload = b""
        if self.orig_data is not None:
            orig_payload, resp_payload = bytes(self.orig_data), bytes(self.resp_data)
            self.budget.held -= len(orig_payload) + len(resp_payload)
            self.orig_data = self.resp_data = None
        return Finished(
            self.proto,
            self.orig,
            self.resp,
            self.orig_port,
            self.resp_port,
            self.start,
            self.last,
            self.orig_bytes,
            self.resp_bytes,
            self.compute_flag(),
            service(self.proto, self.resp_port, self.icmp_type, self.icmp_code),
            self.urgent,
            self.wrong_fragment,
            self.established,
            self.dialect,
            orig_payload,
            resp_payload,
        )

    @property
    def established(self) -> bool:
        """Both the originator's SYN and the responder's SYN-ACK were seen."""
        return self.history & (O_SYN | R_SYNACK) == (O_SYN | R_SYNACK)

    @property
    def finished(self) -> bool:
        """Closed by FINs from both sides or by a reset (TCP only)."""
        h = self.history
        return bool(h & (O_RST | R_RST)) or h & (O_FIN | R_FIN) == (O_FIN | R_FIN)

    def compute_flag(self) -> str:
        """The Bro/Zeek connection state used as NSL-KDD's `flag`."""
        if self.proto != TCP:
            return "SF"
        h = self.history
        o_syn, r_synack = h & O_SYN, h & R_SYNACK
        o_fin, r_fin, o_rst, r_rst = h & O_FIN, h & R_FIN, h & O_RST, h & R_RST
        if o_syn and r_synack:
            if o_rst:
                return "RSTO"
            if r_rst:
                return "RSTR"
            if o_fin and r_fin:
                return "SF"
            if o_fin:
                return "S2"
            if r_fin:
                return "S3"
            return "S1"
        if o_syn:
            if o_rst:
                return "RSTOS0"
            if r_rst:
                return "REJ"
            if o_fin:
                return "SH"
            return "S0"
        if r_synack:
            if r_rst:
                return "RSTRH"
            if r_fin:
                return "SHR"
        return "OTH"
