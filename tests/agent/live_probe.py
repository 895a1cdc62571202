"""Run in a network namespace by test_live_ring.py: capture on an interface with LiveCapture
while sending test traffic through it; print what was captured (frames, records, drops) as JSON.

    python -m tests.agent.live_probe SCENARIO IFACE [PEER]
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from capture_agent.blocks import Block
from capture_agent.extractor import Extractor
from capture_agent.live import LiveCapture
from tests.agent.helpers import records

TUNSETIFF, TUNSETLINK = 0x400454CA, 0x400454CD
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
TUN_NEAR, TUN_FAR = "198.18.0.1", "198.18.0.2"
NEAR, FAR = "10.78.0.1", "10.78.0.2"
MAC_NEAR, MAC_FAR = "02:00:00:00:00:01", "02:00:00:00:00:02"
FLOOD = 500  # datagrams sent into a ring too small to hold them


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def open_tun(name: str, hatype: int | None = None) -> int:
    """Create tun device name (hardware type changed to hatype if given), addressed and up."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    if hatype is not None:
        fcntl.ioctl(fd, TUNSETLINK, hatype)
    sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "addr", "add", f"{TUN_NEAR}/24", "dev", name)
    sh("ip", "link", "set", name, "up")
    return fd


def udp_to(host: str, count: int = 1) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index in range(count):
            sock.sendto(b"desy %d" % index, (host, 9))


def collect(capture: LiveCapture, wanted: int) -> list[Block]:
    """Blocks until they hold `wanted` frames (10 s at most)."""
    blocks: list[Block] = []
    end, seen = time.monotonic() + 10, 0

    def running() -> bool:
        return seen < wanted and time.monotonic() < end

    for block in capture.blocks(running):
        blocks.append(block)
        seen += len(block)
    return blocks


def report(capture: LiveCapture, blocks: list[Block]) -> dict:
    extractor = Extractor()
    rows = [row for block in blocks for row in extractor.feed_block(block)]
    return {
        "linktype": capture.linktype,
        "frames": [frame.hex() for block in blocks for frame, _, _ in block.frames()],
        "linktypes": sorted({lt for block in blocks for lt in block.linktypes}),
        "records": records(rows + extractor.finish()),
        "dropped": capture.update_drops(),
    }


def probe(iface: str, send: Callable[[], None], wanted: int, bpf: str | None = None) -> dict:
    capture = LiveCapture(iface, bpf, retire_ms=20)
    try:
        send()
        return report(capture, collect(capture, wanted))
    finally:
        capture.close()


def tun_traffic(fd: int) -> None:
    """An echo request written into the tun (the kernel answers) and a datagram sent out of it."""
    os.write(fd, bytes(IP(src=TUN_FAR, dst=TUN_NEAR) / ICMP(id=7) / (b"x" * 32)))
    udp_to(TUN_FAR)


def tun(name: str, bpf: str) -> dict:
    fd = open_tun(name)
    return probe(name, lambda: tun_traffic(fd), 1 if bpf == "udp" else 3, bpf)


def keep_tun(name: str) -> None:
    """Hold tun device name open for another process to capture on: say "ready", then send the
    tun's traffic for each line read, until the end of input."""
    fd = open_tun(name)
    print("ready", flush=True)
    for _ in sys.stdin:
        tun_traffic(fd)


def unknown(name: str) -> dict:
    """A tun made of hardware type 280 (CAN): the capture must refuse it."""
    open_tun(name, hatype=280)
    try:
        LiveCapture(name)
    except OSError as err:
        return {"error": str(err)}
    return {"error": ""}


def flood(iface: str, peer: str) -> dict:
    """FLOOD datagrams into a two-page ring nobody reads while they are sent."""
    sh("ping", "-c", "1", "-W", "5", peer)  # resolves the neighbour first
    capture = LiveCapture(iface, f"udp and dst host {peer}", block_bytes=4096, block_count=2)
    try:
        udp_to(peer, FLOOD)
        dropped = capture.update_drops()
        return report(capture, collect(capture, FLOOD - dropped)) | {"dropped": dropped}
    finally:
        capture.close()


def vlan(name: str) -> dict:
    """A frame tagged VLAN 5 sent into one end of a veth pair, captured at the other, where the
    kernel takes the tag out of the frame (and the capture puts it back)."""
    sh("ip", "link", "add", name, "type", "veth", "peer", f"{name}p")
    sh("ip", "link", "set", name, "up")
    sh("ip", "link", "set", f"{name}p", "up")
    frame = bytes(
        Ether(src=MAC_NEAR, dst=MAC_FAR)
        / Dot1Q(vlan=5)
        / IP(src=NEAR, dst=FAR)
        / UDP(dport=53)
        / b"desy"
    )
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as out:
        out.bind((f"{name}p", 0))
        return probe(name, lambda: out.send(frame), 1) | {"sent": frame.hex()}


def main(scenario: str, iface: str, peer: str = "") -> None:
    if scenario == "keep":
        keep_tun(iface)
        return
    if scenario == "veth":
        sh("ping", "-c", "1", "-W", "5", peer)  # resolves the neighbour first
        result = probe(iface, lambda: udp_to(peer), 1, f"udp and host {peer}")
    elif scenario == "vlan":
        result = vlan(iface)
    elif scenario == "lo":
        sh("ip", "link", "set", "lo", "up")
        result = probe("lo", lambda: udp_to("127.0.0.1", 2), 2, "udp")
    elif scenario == "flood":
        result = flood(iface, peer)
    elif scenario == "unknown":
        result = unknown(iface)
    else:
        result = tun(iface, peer)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
