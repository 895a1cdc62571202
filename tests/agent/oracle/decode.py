"""Raw-byte packet decoding for the hot path: link layer → IPv4/IPv6 → TCP/UDP/ICMP.

No scapy dissection here: struct.unpack_from on the frame bytes. A frame that cannot be decoded
raises Malformed with a short reason; the caller counts it.
"""

from __future__ import annotations

from struct import unpack_from

# pcap link types
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN, _ETH_QINQ, _ETH_VLAN2 = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100
_IPV6_EXTENSIONS = frozenset(
    {0, 43, 60, 51, 135, 139, 140}
)  # hop-by-hop, routing, dest opts, AH, ...
_IPV6_FRAGMENT = 44
_NO_NEXT_HEADER = 59

# TCP flag bits
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


class Malformed(ValueError):
    """A frame that cannot be decoded; the message says why."""


class Packet:
    """What the connection tracker needs from one IP packet."""

    __slots__ = (
        "dport",
        "dst",
        "flags",
        "frag_offset",
        "icmp_code",
        "icmp_type",
        "ip_id",
        "ip_payload_len",
        "more_fragments",
        "payload",
        "proto",
        "seq",
        "sport",
        "src",
        "ts",
        "version",
    )

    def __init__(self) -> None:
        self.sport = self.dport = self.flags = self.seq = 0
        self.payload = b""
        self.ip_id = self.frag_offset = self.ip_payload_len = 0
        self.more_fragments = False
        self.icmp_type = self.icmp_code = -1

    @property
    def is_fragment(self) -> bool:
        """Part of a fragmented datagram (first or later fragment)."""
        return self.more_fragments or self.frag_offset > 0


def decode(frame: bytes, linktype: int, ts: float) -> Packet | None:
    """Decode one frame; None for non-IP frames (ARP, LLDP, ...), Malformed for broken ones."""
    offset, ethertype = _link(frame, linktype)
    if ethertype == _ETH_IPV4:
        return _ipv4(frame, offset, ts)
    if ethertype == _ETH_IPV6:
        return _ipv6(frame, offset, ts)
    return None


def _link(frame: bytes, linktype: int) -> tuple[int, int]:
    """Offset of the network header and its ethertype."""
    size = len(frame)
    if linktype == LINKTYPE_ETHERNET:
        if size < 14:
            raise Malformed("truncated ethernet header")
        (ethertype,) = unpack_from("!H", frame, 12)
        offset = 14
        while ethertype in (_ETH_VLAN, _ETH_QINQ, _ETH_VLAN2):
            if size < offset + 4:
                raise Malformed("truncated 802.1Q tag")
            (ethertype,) = unpack_from("!H", frame, offset + 2)
            offset += 4
        return offset, ethertype
    if linktype == LINKTYPE_LINUX_SLL:
        if size < 16:
            raise Malformed("truncated SLL header")
        return 16, unpack_from("!H", frame, 14)[0]
    if linktype == LINKTYPE_LINUX_SLL2:
        if size < 20:
            raise Malformed("truncated SLL2 header")
        return 20, unpack_from("!H", frame, 0)[0]
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if size < 4:
            raise Malformed("truncated loopback header")
        family = unpack_from("<I", frame, 0)[0]
        if family > 0xFFFF:  # written in the other byte order
            family = unpack_from("!I", frame, 0)[0]
        if family == 2:
            return 4, _ETH_IPV4
        if family in (10, 24, 28, 30):
            return 4, _ETH_IPV6
        return 4, 0
    if linktype in (LINKTYPE_RAW, 12, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            raise Malformed("empty raw IP frame")
        version = frame[0] >> 4
        return 0, _ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else 0
    raise Malformed(f"unsupported link type {linktype}")


def _ipv4(frame: bytes, offset: int, ts: float) -> Packet:
    if len(frame) < offset + 20:
        raise Malformed("truncated IPv4 header")
    ver_ihl, total_len, ip_id, frag, proto = (
        frame[offset],
        *unpack_from("!HHH", frame, offset + 2),
        frame[offset + 9],
    )
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20:
        raise Malformed("bad IPv4 version or header length")
    if total_len < ihl or len(frame) < offset + ihl:
        raise Malformed("bad IPv4 total length")
    end = min(len(frame), offset + total_len)
    pkt = Packet()
    pkt.ts, pkt.version, pkt.proto, pkt.ip_id = ts, 4, proto, ip_id
    pkt.src, pkt.dst = frame[offset + 12 : offset + 16], frame[offset + 16 : offset + 20]
    pkt.frag_offset, pkt.more_fragments = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    pkt.ip_payload_len = total_len - ihl
    _transport(pkt, frame, offset + ihl, end)
    return pkt


def _ipv6(frame: bytes, offset: int, ts: float) -> Packet:
    if len(frame) < offset + 40:
        raise Malformed("truncated IPv6 header")
    if frame[offset] >> 4 != 6:
        raise Malformed("bad IPv6 version")
    payload_len, next_header = unpack_from("!HB", frame, offset + 4)
    pkt = Packet()
    pkt.ts, pkt.version = ts, 6
    pkt.src, pkt.dst = frame[offset + 8 : offset + 24], frame[offset + 24 : offset + 40]
    pos, end = offset + 40, min(len(frame), offset + 40 + payload_len)
    pkt.ip_payload_len = payload_len
    while next_header in _IPV6_EXTENSIONS or next_header == _IPV6_FRAGMENT:
        if end < pos + 8:
            raise Malformed("truncated IPv6 extension header")
        if next_header == _IPV6_FRAGMENT:
            frag, ident = unpack_from("!HI", frame, pos + 2)
            pkt.frag_offset, pkt.more_fragments, pkt.ip_id = frag & 0xFFF8, bool(frag & 1), ident
            length = 8
        elif next_header == 51:  # AH: length in 4-octet units
            length = (frame[pos + 1] + 2) * 4
        else:
            length = (frame[pos + 1] + 1) * 8
        next_header = frame[pos]
        pos += length
    pkt.proto = next_header
    pkt.ip_payload_len = max(0, end - pos) if not pkt.is_fragment else pkt.ip_payload_len
    if pos > end:
        raise Malformed("IPv6 extension headers past the end of the packet")
    _transport(pkt, frame, pos, end)
    return pkt


def _transport(pkt: Packet, frame: bytes, pos: int, end: int) -> None:
    """Ports, TCP flags, ICMP type and payload; only in a datagram's first fragment."""
    if pkt.frag_offset:
        pkt.payload = frame[pos:end]
        return
    proto = pkt.proto
    if proto == TCP:
        if end < pos + 20:
            raise Malformed("truncated TCP header")
        pkt.sport, pkt.dport, pkt.seq = unpack_from("!HHI", frame, pos)
        data_offset = (frame[pos + 12] >> 4) * 4
        if data_offset < 20 or pos + data_offset > end:
            raise Malformed("bad TCP data offset")
        pkt.flags = frame[pos + 13]
        pkt.payload = frame[pos + data_offset : end]
    elif proto == UDP:
        if end < pos + 8:
            raise Malformed("truncated UDP header")
        pkt.sport, pkt.dport = unpack_from("!HH", frame, pos)
        pkt.payload = frame[pos + 8 : end]
    elif proto in (ICMP, ICMPV6):
        if end < pos + 4:
            raise Malformed("truncated ICMP header")
        pkt.icmp_type, pkt.icmp_code = frame[pos], frame[pos + 1]
        pkt.payload = frame[
            pos:end
        ]  # NSL-KDD counts the whole ICMP message (minimum 8 bytes in the data)
    elif proto != _NO_NEXT_HEADER:
        pkt.payload = frame[pos:end]
