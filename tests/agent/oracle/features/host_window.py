"""Host-window features (NSL-KDD 32-41): the last 255 connections to the same host, and to the
same service.

Rules derived from KDDTrain+ (see docs/features.md): the last 255 connections to the same
destination host, this one included (dst_host_count, capped at 255 and equal to 255 in 59 % of
records), and separately the last 255 connections to the same service on any host
(dst_host_srv_count, which exceeds dst_host_count in 28 % of records, so it cannot be a subset of
the host window). Rates over the host window: same_srv, diff_srv (distinct other services, as in
the time window), same_src_port, serror, rerror; over the service window: srv_diff_host,
srv_serror, srv_rerror.
"""

from __future__ import annotations

from collections import OrderedDict

from capture_agent.extractor import MAX_HOSTS
from desy.schema import HOST_COUNT_CAP
from tests.agent.oracle.connection import RERROR_FLAGS, SERROR_FLAGS, Finished
from tests.agent.oracle.features.groups import Group, bump, pct


class HostWindow:
    """Rings of the last HOST_COUNT_CAP connections per destination host (at most max_hosts
    hosts, the least recently seen forgotten first) and per service."""

    names = (
        "dst_host_count",
        "dst_host_srv_count",
        "dst_host_same_srv_rate",
        "dst_host_diff_srv_rate",
        "dst_host_same_src_port_rate",
        "dst_host_srv_diff_host_rate",
        "dst_host_serror_rate",
        "dst_host_srv_serror_rate",
        "dst_host_rerror_rate",
        "dst_host_srv_rerror_rate",
    )

    def __init__(self, max_hosts: int = MAX_HOSTS) -> None:
        self.host_rings: OrderedDict[bytes, Group] = OrderedDict()
        self.service_rings: dict[str, Group] = {}
        self.max_hosts = max_hosts

    def on_expire(self, conn: Finished) -> tuple:
        service, host_key, port, flag = conn.service, conn.resp, conn.orig_port, conn.flag
        host, srv = self._push(
            (host_key, service, port, flag in SERROR_FLAGS, flag in RERROR_FLAGS)
        )
        n, m = host.n, srv.n
        return (
            n,
            m,
            pct(host.keys[service], n),
            pct(len(host.keys) - 1, n),
            pct(host.ports[port], n),
            pct(m - srv.keys[host_key], m),
            pct(host.serror, n),
            pct(srv.serror, m),
            pct(host.rerror, n),
            pct(srv.rerror, m),
        )

    def _push(self, entry: tuple) -> tuple[Group, Group]:
        """Add entry (host, service, source port, serror, rerror) to the rings of its host and
        its service."""
        host_key, service, port, serror, rerror = entry
        rings = self.host_rings
        host = rings.get(host_key)
        if host is None:
            host = rings[host_key] = Group(ring=True)
            if len(rings) > self.max_hosts:
                rings.popitem(last=False)
        else:
            rings.move_to_end(host_key)
        srv = self.service_rings.get(service)
        if srv is None:
            srv = self.service_rings[service] = Group(ring=True)
        for group, member in ((host, service), (srv, host_key)):
            group.ring.append(entry)
            group.n += 1
            group.serror += serror
            group.rerror += rerror
            bump(group.keys, member, 1)
            bump(group.ports, port, 1)
            if group.n > HOST_COUNT_CAP:
                old_host, old_service, old_port, old_serror, old_rerror = group.ring.popleft()
                group.n -= 1
                group.serror -= old_serror
                group.rerror -= old_rerror
                bump(group.keys, old_service if group is host else old_host, -1)
                bump(group.ports, old_port, -1)
        return host, srv
