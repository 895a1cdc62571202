"""The 41 NSL-KDD features of a finished connection, in dataset order, plus its endpoints."""

from __future__ import annotations

import socket
from typing import Any

from capture_agent.connection import RERROR_FLAGS, SERROR_FLAGS, Connection
from capture_agent.content import content_features
from capture_agent.decode import ICMP, ICMPV6, TCP, UDP
from capture_agent.services import service
from capture_agent.windows import Entry, TrafficWindows
from desy.schema import FEATURE_NAMES

PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmp"}
#: Endpoint fields that follow the 41 features in a record (originator first).
ENDPOINT_FIELDS = ("src_ip", "src_port", "dst_ip", "dst_port", "start_time", "end_time")


def address(raw: bytes) -> str:
    """Text form of a 4- or 16-byte address."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def connection_record(conn: Connection, windows: TrafficWindows) -> dict[str, Any]:
    """Features and endpoints of one finished connection; updates the traffic windows."""
    flag = conn.flag = conn.compute_flag()
    icmp = conn.proto in (ICMP, ICMPV6)
    name = service(conn.proto, conn.resp_port, conn.icmp_type, conn.icmp_code)
    if conn.dialect is None:
        orig, resp = b"x" * bool(conn.orig_bytes), b"x" * bool(conn.resp_bytes)
    else:
        orig, resp = b"".join(conn.orig_data), b"".join(conn.resp_data)
    content = content_features(conn.dialect, orig, resp, conn.established)
    if conn.proto != TCP:
        content["logged_in"] = 0
    basic = {
        "duration": int(conn.last - conn.start),
        "protocol_type": PROTOCOL_NAMES.get(conn.proto, "tcp"),
        "service": name,
        "flag": flag,
        "src_bytes": conn.orig_bytes,
        "dst_bytes": conn.resp_bytes,
        "land": int(conn.orig == conn.resp and (icmp or conn.orig_port == conn.resp_port)),
        "wrong_fragment": conn.wrong_fragment,
        "urgent": conn.urgent,
    }
    entry = Entry(
        end=conn.last, host=conn.resp, src_port=conn.orig_port, service=name,
        serror=flag in SERROR_FLAGS, rerror=flag in RERROR_FLAGS,
    )
    values = basic | content | windows.features(entry)
    record = {key: values[key] for key in FEATURE_NAMES}
    record.update(
        src_ip=address(conn.orig), src_port=0 if icmp else conn.orig_port,
        dst_ip=address(conn.resp), dst_port=0 if icmp else conn.resp_port,
        start_time=conn.start, end_time=conn.last,
    )
    return record
