"""The 41 NSL-KDD features of a finished connection, in dataset order, plus its endpoints."""

from __future__ import annotations

import socket

from capture_agent.connection import RERROR_FLAGS, SERROR_FLAGS, Finished
from capture_agent.content import CONTENT_FEATURES, content_features
from capture_agent.decode import ICMP, ICMPV6, TCP, UDP
from capture_agent.services import service
from capture_agent.windows import Entry, TrafficWindows
from desy.schema import ENDPOINT_FIELDS, FEATURE_NAMES

PROTOCOL_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmp"}
#: Field order of a record: the 41 features in dataset order, then the endpoints and times.
RECORD_FIELDS = (*FEATURE_NAMES, *ENDPOINT_FIELDS)
#: Content features of a connection whose payload is not inspected, and the same with logged_in.
NO_CONTENT = (0,) * len(CONTENT_FEATURES)
LOGGED_IN_ONLY = tuple(int(name == "logged_in") for name in CONTENT_FEATURES)


def address(raw: bytes) -> str:
    """Text form of a 4- or 16-byte address."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def connection_row(conn: Finished | tuple, windows: TrafficWindows) -> tuple:
    """The record's values in RECORD_FIELDS order (basic, content, time window, host window,
    endpoints); updates the traffic windows. conn may be a Finished or a plain tuple of its fields."""
    (proto, orig, resp, orig_port, resp_port, start, last, orig_bytes, resp_bytes, flag, urgent, wrong_fragment,
     icmp_type, icmp_code, established, dialect, orig_payload, resp_payload) = conn
    icmp = proto == ICMP or proto == ICMPV6
    name = service(proto, resp_port, icmp_type, icmp_code)
    if dialect is not None:
        content = tuple(content_features(dialect, orig_payload, resp_payload, established).values())
    elif proto == TCP and orig_bytes and resp_bytes and established:
        content = LOGGED_IN_ONLY
    else:
        content = NO_CONTENT
    traffic = windows.add(Entry(last, resp, orig_port, name, flag in SERROR_FLAGS, flag in RERROR_FLAGS))
    return (
        int(last - start), PROTOCOL_NAMES.get(proto, "tcp"), name, flag, orig_bytes, resp_bytes,
        int(orig == resp and (icmp or orig_port == resp_port)), wrong_fragment, urgent,
        *content, *traffic,
        address(orig), 0 if icmp else orig_port, address(resp), 0 if icmp else resp_port, start, last,
    )
