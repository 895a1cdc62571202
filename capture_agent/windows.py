"""Traffic features 23–41: the 2-second window and the host window.

Rules derived from KDDTrain+ (see docs/features.md):
- Both windows include the connection itself (records alone in their window have count 1 and
  same_srv_rate 1).
- Time window: connections that ended in the 2 s before this one ended, in emission order.
  count = same destination host, srv_count = same service (any host). serror/rerror rates are
  over the count set, srv_* rates over the srv_count set. same_srv_rate = share of the count set
  with this service; diff_srv_rate = number of *other distinct services* in the count set over
  count (same_srv_rate + diff_srv_rate differs from 1 in 36 % of records, which rules out the
  complement); srv_diff_host_rate = share of the srv_count set going to other hosts.
  Counts are capped at 511 as in the data.
- Host window: the last 255 connections to the same destination host (dst_host_count, capped at
  255 and equal to 255 in 59 % of records), and separately the last 255 connections to the same
  service on any host (dst_host_srv_count, which exceeds dst_host_count in 28 % of records, so it
  cannot be a subset of the host window). Rates over the host window: same_srv, diff_srv (distinct
  other services, as above), same_src_port, serror, rerror; over the service window:
  srv_diff_host, srv_serror, srv_rerror.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple

from desy.schema import FEATURE_NAMES, HOST_COUNT_CAP, WINDOW_COUNT_CAP

TIME_WINDOW = 2.0
#: The 19 traffic features (count ... dst_host_srv_rerror_rate), in dataset order.
TRAFFIC_FEATURES = FEATURE_NAMES[22:]


class Entry(NamedTuple):
    """What the windows remember of one emitted connection."""

    end: float
    host: bytes
    src_port: int
    service: str
    serror: bool
    rerror: bool


class _Group:
    """Counts over the members of one window group: one destination host or one service."""

    __slots__ = ("n", "serror", "rerror", "keys", "ports", "ring")

    def __init__(self, ring: bool = False) -> None:
        self.n = self.serror = self.rerror = 0
        self.keys: dict = {}  # service -> count in a host group, host -> count in a service group
        self.ports: dict = {}  # source port -> count (host rings only)
        self.ring: deque | None = deque() if ring else None


def _bump(counts: dict, key: object, step: int) -> None:
    value = counts.get(key, 0) + step
    if value:
        counts[key] = value
    else:
        del counts[key]


def _pct(part: int, whole: int) -> float:
    """part / whole rounded half-up to 2 decimals, as the dataset prints rates (faster than round())."""
    return int(part * 100 / whole + 0.5) / 100


class TrafficWindows:
    """Incremental time-window and host-window aggregates over emitted connections.

    Every group holds at least the connection being added, so no rate divides by zero.
    """

    def __init__(self, max_hosts: int = 65_536) -> None:
        self.recent: deque[Entry] = deque()
        self.by_host: dict[bytes, _Group] = {}
        self.by_service: dict[str, _Group] = {}
        self.host_rings: OrderedDict[bytes, _Group] = OrderedDict()
        self.service_rings: dict[str, _Group] = {}
        self.max_hosts = max_hosts

    def features(self, entry: Entry) -> dict[str, float | int]:
        """Add entry to the windows and return its 19 traffic features by name."""
        return dict(zip(TRAFFIC_FEATURES, self.add(entry)))

    def add(self, entry: Entry) -> tuple:
        """Add entry to the windows and return its 19 traffic features in dataset order."""
        self._slide(entry)
        host, srv = self.by_host[entry.host], self.by_service[entry.service]
        n, m = host.n, srv.n
        window = (
            n if n < WINDOW_COUNT_CAP else WINDOW_COUNT_CAP,
            m if m < WINDOW_COUNT_CAP else WINDOW_COUNT_CAP,
            _pct(host.serror, n),
            _pct(srv.serror, m),
            _pct(host.rerror, n),
            _pct(srv.rerror, m),
            _pct(host.keys[entry.service], n),
            _pct(len(host.keys) - 1, n),
            _pct(m - srv.keys[entry.host], m),
        )
        host, srv = self._push_rings(entry)
        n, m = host.n, srv.n
        return (
            *window,
            n,
            m,
            _pct(host.keys[entry.service], n),
            _pct(len(host.keys) - 1, n),
            _pct(host.ports[entry.src_port], n),
            _pct(m - srv.keys[entry.host], m),
            _pct(host.serror, n),
            _pct(srv.serror, m),
            _pct(host.rerror, n),
            _pct(srv.rerror, m),
        )

    def _slide(self, entry: Entry) -> None:
        """Drop connections that ended more than 2 s before entry, then add entry."""
        recent, by_host, by_service = self.recent, self.by_host, self.by_service
        horizon = entry.end - TIME_WINDOW
        while recent and recent[0].end < horizon:
            old = recent.popleft()
            for groups, key, member in ((by_host, old.host, old.service), (by_service, old.service, old.host)):
                group = groups[key]
                group.n -= 1
                group.serror -= old.serror
                group.rerror -= old.rerror
                _bump(group.keys, member, -1)
                if not group.n:
                    del groups[key]
        recent.append(entry)
        for groups, key, member in ((by_host, entry.host, entry.service), (by_service, entry.service, entry.host)):
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group()
            group.n += 1
            group.serror += entry.serror
            group.rerror += entry.rerror
            _bump(group.keys, member, 1)

    def _push_rings(self, entry: Entry) -> tuple[_Group, _Group]:
        """Add entry to the last-255 rings of its host and its service."""
        rings = self.host_rings
        host = rings.get(entry.host)
        if host is None:
            host = rings[entry.host] = _Group(ring=True)
            if len(rings) > self.max_hosts:
                rings.popitem(last=False)
        else:
            rings.move_to_end(entry.host)
        srv = self.service_rings.get(entry.service)
        if srv is None:
            srv = self.service_rings[entry.service] = _Group(ring=True)
        for group, member in ((host, entry.service), (srv, entry.host)):
            group.ring.append(entry)
            group.n += 1
            group.serror += entry.serror
            group.rerror += entry.rerror
            _bump(group.keys, member, 1)
            _bump(group.ports, entry.src_port, 1)
            if group.n > HOST_COUNT_CAP:
                old = group.ring.popleft()
                group.n -= 1
                group.serror -= old.serror
                group.rerror -= old.rerror
                _bump(group.keys, old.service if group is host else old.host, -1)
                _bump(group.ports, old.src_port, -1)
        return host, srv
