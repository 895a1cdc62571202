"""Basic features (NSL-KDD 1-9) of a connection, and its endpoints and times."""

from __future__ import annotations

import socket

from tests.agent.oracle.connection import Finished
from tests.agent.oracle.decode import ICMP, ICMPV6, TCP, UDP

PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmp"}


def address(raw: bytes) -> str:
    """Text form of a 4- or 16-byte address."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class BasicFeatures:
    """Duration, protocol, service, Zeek state, bytes each way, land, faults, urgent packets."""

    names = (
        "duration",
        "protocol_type",
        "service",
        "flag",
        "src_bytes",
        "dst_bytes",
        "land",
        "wrong_fragment",
        "urgent",
    )

    def on_expire(self, conn: Finished) -> tuple:
        proto = conn.proto
        icmp = proto == ICMP or proto == ICMPV6
        land = conn.orig == conn.resp and (icmp or conn.orig_port == conn.resp_port)
        return (
            int(conn.last - conn.start),
            PROTOCOL_NAMES.get(proto, "tcp"),
            conn.service,
            conn.flag,
            conn.orig_bytes,
            conn.resp_bytes,
            int(land),
            conn.wrong_fragment,
            conn.urgent,
        )


class Endpoints:
    """Addresses, ports (0 for ICMP, as the dataset has no ports there) and times."""

    names = ("src_ip", "src_port", "dst_ip", "dst_port", "start_time", "end_time")

    def on_expire(self, conn: Finished) -> tuple:
        icmp = conn.proto == ICMP or conn.proto == ICMPV6
        return (
            address(conn.orig),
            0 if icmp else conn.orig_port,
            address(conn.resp),
            0 if icmp else conn.resp_port,
            conn.start,
            conn.last,
        )
