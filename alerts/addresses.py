"""Addresses as 16-byte keys (IPv4 mapped into IPv6), so a CIDR is a range of keys that SQLite
and PostgreSQL both compare bytewise."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


@lru_cache(maxsize=65_536)  # the same few hosts, over and over
def address_key(text: str) -> bytes | None:
    """The key of an address; None for an empty or invalid one."""
    try:  # dotted-quad IPv4 (strict, as ipaddress: no leading zeros) at C speed
        return _V4_MAPPED + socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        pass
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _V4_MAPPED + address.packed if address.version == 4 else address.packed


def network_range(text: str) -> tuple[bytes, bytes]:
    """(first, last) keys of an address or CIDR (e.g. 10.0.0.0/8); ValueError if it is neither
    (or has an IPv6 scope id, free text that Python's parser would take)."""
    if "%" in text:
        raise ValueError(f"{text!r}: no scope ids")
    network = ipaddress.ip_network(text.strip(), strict=False)
    prefix = _V4_MAPPED if network.version == 4 else b""
    return prefix + network.network_address.packed, prefix + network.broadcast_address.packed
