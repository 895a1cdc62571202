"""Link layers, IPv6 extension headers, fragments and 100k broken frames.

The decoded fields are checked on the oracle's decoder (tests/agent/oracle, which the native
engine is held to by test_engine_identical.py); the broken frames go through the production
Extractor.
"""

import random
import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether, Loopback

from capture_agent.extractor import Extractor
from tests.agent.oracle import decode as d

SYN = TCP(sport=1234, dport=80, flags="S", seq=7)


def test_ethernet_vlan_qinq():
    for frame in (
        Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / SYN,
        Ether() / Dot1Q(vlan=5) / IP(src="1.2.3.4", dst="5.6.7.8") / SYN,
        Ether(type=0x88A8) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="1.2.3.4", dst="5.6.7.8") / SYN,
    ):
        pkt = d.decode(bytes(frame), d.LINKTYPE_ETHERNET, 1.0)
        assert (pkt.proto, pkt.sport, pkt.dport, pkt.flags, pkt.seq) == (6, 1234, 80, 2, 7)
        assert pkt.src == bytes([1, 2, 3, 4])


def test_sll_sll2_loopback_and_raw():
    ip = bytes(IP(src="1.2.3.4", dst="5.6.7.8") / SYN)
    sll = bytes(CookedLinux(proto=0x0800) / IP(src="1.2.3.4", dst="5.6.7.8") / SYN)
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\0" * 8) + ip
    null = bytes(Loopback(type=2)) + ip
    for frame, linktype in (
        (sll, d.LINKTYPE_LINUX_SLL),
        (sll2, d.LINKTYPE_LINUX_SLL2),
        (null, d.LINKTYPE_NULL),
        (struct.pack("!I", 2) + ip, d.LINKTYPE_LOOP),
        (ip, d.LINKTYPE_RAW),
        (ip, d.LINKTYPE_IPV4),
    ):
        pkt = d.decode(frame, linktype, 0.0)
        assert (pkt.sport, pkt.dport) == (1234, 80), linktype


def test_ipv6_extension_headers_and_fragment():
    frame = (
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=53, dport=5353)
        / b"abcd"
    )
    pkt = d.decode(bytes(frame), 1, 0.0)
    assert (pkt.version, pkt.proto, pkt.sport, pkt.dport, len(pkt.payload)) == (6, 17, 53, 5353, 4)
    frag = (
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=10, m=1, id=99)
        / (b"x" * 16)
    )
    pkt = d.decode(bytes(frag), 1, 0.0)
    assert pkt.is_fragment and pkt.frag_offset == 80 and pkt.ip_id == 99


def test_truncated_frames_are_counted_as_malformed():
    frame = bytes(Ether() / Dot1Q(vlan=3) / IP(src="1.2.3.4", dst="5.6.7.8", options=[]) / SYN)
    extractor = Extractor()
    for cut in range(1, 18 + 20 + 20):  # inside the Ethernet, 802.1Q, IPv4 and TCP headers
        assert extractor.feed(frame[:cut], 1, 0.0) == []
    c = extractor.counters
    assert c.packets_malformed == c.packets_seen == 57


def test_100k_random_and_truncated_frames_never_raise():
    rng = random.Random(1)
    valid = [
        bytes(
            Ether()
            / IP(src="1.2.3.4", dst="5.6.7.8", frag=rng.randrange(0, 8))
            / TCP(sport=1, dport=2)
            / b"data"
        ),
        bytes(Ether() / IPv6() / IPv6ExtHdrFragment(m=1) / UDP() / b"x"),
        bytes(Ether() / IP(ihl=15) / (b"\0" * 10)),
    ]
    extractor = Extractor()
    truncated = 0
    for index in range(100_000):
        kind = index % 4
        if kind == 0:  # random bytes claiming to be IPv4 or IPv6
            frame = (
                b"\0" * 12
                + rng.choice((b"\x08\x00", b"\x86\xdd"))
                + rng.randbytes(rng.randrange(0, 80))
            )
        elif kind == 1:  # a valid frame cut inside its IP header
            frame = valid[index % 2][: rng.randrange(14, 34)]
            truncated += 1
        elif kind == 2:  # a valid frame with random bytes flipped
            frame = bytearray(rng.choice(valid))
            for _ in range(4):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame)
        else:
            frame = rng.randbytes(rng.randrange(0, 100))
        extractor.feed(
            frame, rng.choice((1, 1, 1, 113, 276, 0, 101)) if kind == 3 else 1, index * 1e-4
        )
    extractor.finish()
    c = extractor.counters
    assert c.packets_seen == 100_000
    assert c.packets_parsed + c.packets_malformed + c.packets_not_ip == 100_000
    assert c.packets_malformed >= truncated
