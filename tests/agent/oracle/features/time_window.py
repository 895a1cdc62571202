"""Time-window features (NSL-KDD 23-31): the connections that ended in the last 2 seconds.

Rules derived from KDDTrain+ (see docs/features.md): the window includes the connection itself
(records alone in their window have count 1 and same_srv_rate 1) and holds connections in
emission order. count = same destination host, srv_count = same service (any host). serror and
rerror rates are over the count set, srv_* rates over the srv_count set. same_srv_rate = share of
the count set with this service; diff_srv_rate = number of *other distinct services* in the
count set over count (same_srv_rate + diff_srv_rate differs from 1 in 36 % of records, which
rules out the complement); srv_diff_host_rate = share of the srv_count set going to other hosts.
Counts are capped at 511 as in the data.
"""

from __future__ import annotations

from collections import deque

from capture_agent.extractor import TIME_WINDOW
from desy.schema import WINDOW_COUNT_CAP
from tests.agent.oracle.connection import RERROR_FLAGS, SERROR_FLAGS, Finished
from tests.agent.oracle.features.groups import Group, bump, pct


class TimeWindow:
    """Incremental aggregates over the connections of the last TIME_WINDOW seconds. Every group
    holds at least the connection being added, so no rate divides by zero."""

    names = (
        "count",
        "srv_count",
        "serror_rate",
        "srv_serror_rate",
        "rerror_rate",
        "srv_rerror_rate",
        "same_srv_rate",
        "diff_srv_rate",
        "srv_diff_host_rate",
    )

    def __init__(self) -> None:
        self.recent: deque[tuple] = deque()  # (end, host, service, serror, rerror)
        self.by_host: dict[bytes, Group] = {}
        self.by_service: dict[str, Group] = {}

    def on_expire(self, conn: Finished) -> tuple:
        service, host_key, flag = conn.service, conn.resp, conn.flag
        self._slide((conn.last, host_key, service, flag in SERROR_FLAGS, flag in RERROR_FLAGS))
        host, srv = self.by_host[host_key], self.by_service[service]
        n, m = host.n, srv.n
        return (
            min(WINDOW_COUNT_CAP, n),
            min(WINDOW_COUNT_CAP, m),
            pct(host.serror, n),
            pct(srv.serror, m),
            pct(host.rerror, n),
            pct(srv.rerror, m),
            pct(host.keys[service], n),
            pct(len(host.keys) - 1, n),
            pct(m - srv.keys[host_key], m),
        )

    def _slide(self, entry: tuple) -> None:
        """Drop connections that ended more than TIME_WINDOW before entry, then add entry."""
        recent, by_host, by_service = self.recent, self.by_host, self.by_service
        horizon = entry[0] - TIME_WINDOW
        while recent and recent[0][0] < horizon:
            _, host, service, serror, rerror = recent.popleft()
            for groups, key, member in ((by_host, host, service), (by_service, service, host)):
                group = groups[key]
                group.n -= 1
                group.serror -= serror
                group.rerror -= rerror
                bump(group.keys, member, -1)
                if not group.n:
                    del groups[key]
        recent.append(entry)
        _, host, service, serror, rerror = entry
        for groups, key, member in ((by_host, host, service), (by_service, service, host)):
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group()
            group.n += 1
            group.serror += serror
            group.rerror += rerror
            bump(group.keys, member, 1)
