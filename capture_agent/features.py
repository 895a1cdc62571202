"""The 41 NSL-KDD features of a finished connection, in dataset order, plus its endpoints."""

from __future__ import annotations

import socket
from typing import Any

from capture_agent.connection import RERROR_FLAGS, SERROR_FLAGS, Finished
from capture_agent.content import CONTENT_FEATURES, content_features
from capture_agent.decode import ICMP, ICMPV6, TCP, UDP
from capture_agent.services import service
from capture_agent.windows import Entry, TrafficWindows

PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmp"}
#: Endpoint fields that follow the 41 features in a record (originator first).
ENDPOINT_FIELDS = ("src_ip", "src_port", "dst_ip", "dst_port", "start_time", "end_time")
#: Content features of a connection whose payload is not inspected (logged_in may be set after).
NO_CONTENT = dict.fromkeys(CONTENT_FEATURES, 0)


def address(raw: bytes) -> str:
    """Text form of a 4- or 16-byte address."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def connection_record(conn: Finished, windows: TrafficWindows) -> dict[str, Any]:
    """Features (already in dataset order: basic, content, time window, host window) and
    endpoints of one finished connection; updates the traffic windows."""
    flag = conn.flag
    icmp = conn.proto in (ICMP, ICMPV6)
    name = service(conn.proto, conn.resp_port, conn.icmp_type, conn.icmp_code)
    record = {
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
    if conn.dialect is not None:
        record.update(content_features(conn.dialect, conn.orig_payload, conn.resp_payload, conn.established))
    else:
        record.update(NO_CONTENT)
        if conn.proto == TCP and conn.orig_bytes and conn.resp_bytes and conn.established:
            record["logged_in"] = 1
    entry = Entry(conn.last, conn.resp, conn.orig_port, name, flag in SERROR_FLAGS, flag in RERROR_FLAGS)
    windows.add(entry, record)
    record["src_ip"] = address(conn.orig)
    record["src_port"] = 0 if icmp else conn.orig_port
    record["dst_ip"] = address(conn.resp)
    record["dst_port"] = 0 if icmp else conn.resp_port
    record["start_time"] = conn.start
    record["end_time"] = conn.last
    return record
