"""The demo's synthetic capture: normal web and DNS sessions, a SYN port scan, a SYN flood."""

from __future__ import annotations

import random
from pathlib import Path

CLIENT, SERVER, DNS, SCANNER = "192.168.10.5", "192.168.10.80", "192.168.10.53", "192.168.10.66"


def demo_capture(path: Path, seed: int = 7) -> Path:
    """Write a capture with normal HTTP and DNS sessions, a SYN port scan and a SYN flood."""
    from scapy.layers.dns import DNS as DNSLayer
    from scapy.layers.dns import DNSQR, DNSRR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    rng = random.Random(seed)
    packets = []
    t0 = 1_760_000_000.0

    def add(pkt, t):
        pkt.time = t0 + t
        packets.append(pkt)

    for i in range(20):  # normal web browsing and name lookups
        t, port = i * 3.0, 40000 + i
        c, s = Ether() / IP(src=CLIENT, dst=SERVER), Ether() / IP(src=SERVER, dst=CLIENT)
        # as curl asks and nginx answers, pages of a small site's sizes
        request = (
            f"GET /page{i}.html HTTP/1.1\r\nHost: intranet\r\nUser-Agent: curl/7.88.1\r\n"
            "Accept: */*\r\n\r\n"
        ).encode()
        size = rng.choice((2_300, 7_800, 15_000, 48_000))
        response = (
            "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 09 Oct 2025 08:53:20 GMT\r\n"
            f"Content-Type: text/html\r\nContent-Length: {size}\r\nConnection: keep-alive\r\n"
            'ETag: "68e77a70-8fc"\r\nAccept-Ranges: bytes\r\n\r\n'
        ).encode() + b"x" * size
        add(c / TCP(sport=port, dport=80, flags="S", seq=100), t)
        add(s / TCP(sport=80, dport=port, flags="SA", seq=900, ack=101), t + 0.001)
        add(c / TCP(sport=port, dport=80, flags="A", seq=101, ack=901), t + 0.002)
        add(c / TCP(sport=port, dport=80, flags="PA", seq=101, ack=901) / request, t + 0.003)
        add(
            s / TCP(sport=80, dport=port, flags="PA", seq=901, ack=101 + len(request)) / response,
            t + 0.02,
        )
        add(
            c
            / TCP(
                sport=port, dport=80, flags="FA", seq=101 + len(request), ack=901 + len(response)
            ),
            t + 0.03,
        )
        add(
            s
            / TCP(
                sport=80, dport=port, flags="FA", seq=901 + len(response), ack=102 + len(request)
            ),
            t + 0.031,
        )
        add(
            c
            / TCP(sport=port, dport=80, flags="A", seq=102 + len(request), ack=902 + len(response)),
            t + 0.032,
        )
        name = f"host{i}.example."
        add(
            Ether()
            / IP(src=CLIENT, dst=DNS)
            / UDP(sport=50000 + i, dport=53)
            / DNSLayer(id=i, qd=DNSQR(qname=name)),
            t + 0.5,
        )
        add(
            Ether()
            / IP(src=DNS, dst=CLIENT)
            / UDP(sport=53, dport=50000 + i)
            / DNSLayer(
                id=i, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="192.168.10.9")
            ),
            t + 0.51,
        )
    open_ports = {22, 80}
    for n, port in enumerate(range(1, 1025)):  # SYN port scan
        t = 70.0 + n * 0.001
        add(
            Ether() / IP(src=SCANNER, dst=SERVER) / TCP(sport=61000, dport=port, flags="S", seq=7),
            t,
        )
        if port in open_ports:
            add(
                Ether()
                / IP(src=SERVER, dst=SCANNER)
                / TCP(sport=port, dport=61000, flags="SA", seq=3, ack=8),
                t + 0.0002,
            )
            add(
                Ether()
                / IP(src=SCANNER, dst=SERVER)
                / TCP(sport=61000, dport=port, flags="R", seq=8),
                t + 0.0004,
            )
        else:
            add(
                Ether()
                / IP(src=SERVER, dst=SCANNER)
                / TCP(sport=port, dport=61000, flags="RA", seq=0, ack=8),
                t + 0.0002,
            )
    for n in range(3000):  # SYN flood from spoofed sources
        source = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        add(
            Ether()
            / IP(src=source, dst=SERVER)
            / TCP(sport=rng.randrange(1024, 65535), dport=80, flags="S"),
            80.0 + n * 0.0005,
        )
    packets.sort(key=lambda p: p.time)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), packets)
    return path
