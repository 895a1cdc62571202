"""The NSL-KDD `service` of a connection: responder port (TCP/UDP) or ICMP type.

Port numbers follow the IANA assignments the DARPA 1998 data used; every name returned is in
desy.schema.SERVICES. Unassigned ports below 1024 are `private`, the rest `other`.
"""

from __future__ import annotations

from socket import IPPROTO_ICMP as ICMP
from socket import IPPROTO_ICMPV6 as ICMPV6
from socket import IPPROTO_TCP as TCP
from socket import IPPROTO_UDP as UDP

TCP_SERVICES: dict[int, str] = {
    7: "echo",
    9: "discard",
    11: "systat",
    13: "daytime",
    15: "netstat",
    20: "ftp_data",
    21: "ftp",
    22: "ssh",
    23: "telnet",
    25: "smtp",
    37: "time",
    42: "name",
    43: "whois",
    53: "domain",
    57: "mtp",
    70: "gopher",
    71: "remote_job",
    77: "rje",
    79: "finger",
    80: "http",
    84: "ctf",
    87: "link",
    95: "supdup",
    101: "hostnames",
    102: "iso_tsap",
    105: "csnet_ns",
    109: "pop_2",
    110: "pop_3",
    111: "sunrpc",
    113: "auth",
    117: "uucp_path",
    119: "nntp",
    137: "netbios_ns",
    138: "netbios_dgm",
    139: "netbios_ssn",
    143: "imap4",
    150: "sql_net",
    175: "vmnet",
    179: "bgp",
    194: "IRC",
    210: "Z39_50",
    389: "ldap",
    433: "nnsp",
    443: "http_443",
    512: "exec",
    513: "login",
    514: "shell",
    515: "printer",
    520: "efs",
    530: "courier",
    540: "uucp",
    543: "klogin",
    544: "kshell",
    2784: "http_2784",
    5190: "aol",
    6667: "IRC",
    8001: "http_8001",
    **{port: "X11" for port in range(6000, 6064)},
}
UDP_SERVICES: dict[int, str] = {53: "domain_u", 69: "tftp_u", 123: "ntp_u"}
#: ICMP (type, code) → service; code None matches any code.
# fmt: off
ICMP_SERVICES: dict[tuple[int, int | None], str] = {
    (8, None): "eco_i", (0, None): "ecr_i", (3, 3): "urp_i", (3, None): "urh_i", (5, None): "red_i",
    (13, None): "tim_i", (14, None): "tim_i",
}
ICMPV6_SERVICES: dict[tuple[int, int | None], str] = {
    (128, None): "eco_i", (129, None): "ecr_i", (1, 4): "urp_i", (1, None): "urh_i", (137, None): "red_i",
}
# fmt: on


def service(proto: int, resp_port: int, icmp_type: int = -1, icmp_code: int = -1) -> str:
    """Service name for a connection's protocol and responder port (or ICMP type/code)."""
    if proto == TCP:
        return TCP_SERVICES.get(resp_port) or _unassigned(resp_port)
    if proto == UDP:
        return UDP_SERVICES.get(resp_port) or _unassigned(resp_port)
    if proto in (ICMP, ICMPV6):
        table = ICMP_SERVICES if proto == ICMP else ICMPV6_SERVICES
        return table.get((icmp_type, icmp_code)) or table.get((icmp_type, None)) or "other"
    return "other"


def _unassigned(port: int) -> str:
    return "private" if port < 1024 else "other"
