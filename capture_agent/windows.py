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

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from desy.schema import HOST_COUNT_CAP, WINDOW_COUNT_CAP

TIME_WINDOW = 2.0


@dataclass(slots=True)
class Entry:
    """What the windows remember of one emitted connection."""

    end: float
    host: bytes
    src_port: int
    service: str
    serror: bool
    rerror: bool


def _pct(part: int, whole: int) -> float:
    """part / whole rounded half-up to 2 decimals, as the dataset prints rates (faster than round())."""
    return int(part * 100 / whole + 0.5) / 100


class _Group:
    """Aggregates over the members of one window group (one host or one service).

    With a `size`, the group is a ring of the last `size` members; otherwise members are removed
    explicitly when they leave the time window.
    """

    __slots__ = ("n", "serror", "rerror", "keys", "ports", "ring")

    def __init__(self, size: int | None = None) -> None:
        self.n = self.serror = self.rerror = 0
        self.keys: Counter = Counter()
        self.ports: Counter = Counter()
        self.ring: deque | None = deque() if size else None

    def change(self, entry: Entry, key: object, step: int) -> None:
        self.n += step
        self.serror += step * entry.serror
        self.rerror += step * entry.rerror
        self.keys[key] += step
        if not self.keys[key]:
            del self.keys[key]

    def push(self, entry: Entry, key: object, size: int) -> None:
        """Append to the ring, dropping its oldest member beyond size; also tracks source ports."""
        self.ring.append((entry, key))
        self.change(entry, key, 1)
        self.ports[entry.src_port] += 1
        if len(self.ring) > size:
            old, old_key = self.ring.popleft()
            self.change(old, old_key, -1)
            self.ports[old.src_port] -= 1
            if not self.ports[old.src_port]:
                del self.ports[old.src_port]


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

    def add(self, entry: Entry, record: dict) -> None:
        """Add entry to the windows and write its 19 traffic features into record, in order."""
        self._slide(entry)
        self._time_features(entry, record)
        self._host_features(entry, record)

    def features(self, entry: Entry) -> dict[str, float | int]:
        """Add entry to the windows and return its 19 traffic features."""
        record: dict[str, float | int] = {}
        self.add(entry, record)
        return record

    def _slide(self, entry: Entry) -> None:
        horizon = entry.end - TIME_WINDOW
        recent, by_host, by_service = self.recent, self.by_host, self.by_service
        while recent and recent[0].end < horizon:
            old = recent.popleft()
            group = by_host[old.host]
            group.change(old, old.service, -1)
            if not group.n:
                del by_host[old.host]
            group = by_service[old.service]
            group.change(old, old.host, -1)
            if not group.n:
                del by_service[old.service]
        self.recent.append(entry)
        self._group(self.by_host, entry.host).change(entry, entry.service, 1)
        self._group(self.by_service, entry.service).change(entry, entry.host, 1)
        rings = self.host_rings
        if entry.host not in rings:
            rings[entry.host] = _Group(HOST_COUNT_CAP)
            if len(rings) > self.max_hosts:
                rings.popitem(last=False)
        else:
            rings.move_to_end(entry.host)
        rings[entry.host].push(entry, entry.service, HOST_COUNT_CAP)
        if entry.service not in self.service_rings:
            self.service_rings[entry.service] = _Group(HOST_COUNT_CAP)
        self.service_rings[entry.service].push(entry, entry.host, HOST_COUNT_CAP)

    @staticmethod
    def _group(groups: dict, key: object) -> _Group:
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        return group

    def _time_features(self, entry: Entry, out: dict) -> None:
        host = self.by_host[entry.host]
        srv = self.by_service[entry.service]
        n, m = host.n, srv.n
        out["count"] = n if n < WINDOW_COUNT_CAP else WINDOW_COUNT_CAP
        out["srv_count"] = m if m < WINDOW_COUNT_CAP else WINDOW_COUNT_CAP
        out["serror_rate"] = _pct(host.serror, n)
        out["srv_serror_rate"] = _pct(srv.serror, m)
        out["rerror_rate"] = _pct(host.rerror, n)
        out["srv_rerror_rate"] = _pct(srv.rerror, m)
        out["same_srv_rate"] = _pct(host.keys[entry.service], n)
        out["diff_srv_rate"] = _pct(len(host.keys) - 1, n)
        out["srv_diff_host_rate"] = _pct(m - srv.keys[entry.host], m)

    def _host_features(self, entry: Entry, out: dict) -> None:
        host = self.host_rings[entry.host]
        srv = self.service_rings[entry.service]
        n, m = host.n, srv.n
        out["dst_host_count"] = n
        out["dst_host_srv_count"] = m
        out["dst_host_same_srv_rate"] = _pct(host.keys[entry.service], n)
        out["dst_host_diff_srv_rate"] = _pct(len(host.keys) - 1, n)
        out["dst_host_same_src_port_rate"] = _pct(host.ports[entry.src_port], n)
        out["dst_host_srv_diff_host_rate"] = _pct(m - srv.keys[entry.host], m)
        out["dst_host_serror_rate"] = _pct(host.serror, n)
        out["dst_host_srv_serror_rate"] = _pct(srv.serror, m)
        out["dst_host_rerror_rate"] = _pct(host.rerror, n)
        out["dst_host_srv_rerror_rate"] = _pct(srv.rerror, m)
