"""Traffic-window semantics: inclusion of the connection itself, 2 s expiry, 255-ring, distinct services.

On the window plugins of the oracle (tests/agent/oracle, the Python engine the native one is held
to by test_engine_identical.py): the rules, one connection at a time.
"""

from tests.agent.oracle.connection import Finished
from tests.agent.oracle.decode import TCP
from tests.agent.oracle.features.host_window import HostWindow
from tests.agent.oracle.features.time_window import TimeWindow

H1, H2 = b"\x0a\0\0\x01", b"\x0a\0\0\x02"


def ended(end, host=H1, service="http", port=1000, serror=False, rerror=False) -> Finished:
    flag = "S0" if serror else "REJ" if rerror else "SF"
    return Finished(
        proto=TCP,
        orig=b"\x0a\0\0\x09",
        resp=host,
        orig_port=port,
        resp_port=80,
        start=end,
        last=end,
        orig_bytes=0,
        resp_bytes=0,
        flag=flag,
        service=service,
        urgent=0,
        wrong_fragment=0,
        established=not (serror or rerror),
        dialect=None,
        orig_payload=b"",
        resp_payload=b"",
    )


class Windows:
    """Both window plugins, answering by feature name."""

    def __init__(self) -> None:
        self.plugins = (TimeWindow(), HostWindow())

    def features(self, conn: Finished) -> dict:
        return {
            name: value
            for p in self.plugins
            for name, value in zip(p.names, p.on_expire(conn), strict=True)
        }


def test_connection_alone_counts_itself():
    f = Windows().features(ended(0.0))
    assert (f["count"], f["srv_count"], f["same_srv_rate"], f["diff_srv_rate"]) == (1, 1, 1.0, 0.0)
    assert (f["dst_host_count"], f["dst_host_srv_count"], f["dst_host_same_src_port_rate"]) == (
        1,
        1,
        1.0,
    )


def test_two_second_window_expires():
    w = Windows()
    w.features(ended(0.0))
    w.features(ended(1.0))
    assert w.features(ended(2.5))["count"] == 2  # the one at 0.0 is older than 2 s
    assert w.features(ended(2.6))["dst_host_count"] == 4  # the host window has no time limit


def test_rates_and_distinct_services():
    w = Windows()
    w.features(ended(0.0, service="ftp", serror=True))
    w.features(ended(0.1, service="smtp", rerror=True))
    w.features(ended(0.2, service="http", host=H2))
    f = w.features(ended(0.3, service="http"))
    assert f["count"] == 3 and f["srv_count"] == 2
    assert f["serror_rate"] == 0.33 and f["rerror_rate"] == 0.33
    assert f["same_srv_rate"] == 0.33 and f["diff_srv_rate"] == 0.67
    assert f["srv_diff_host_rate"] == 0.5
    assert f["dst_host_srv_count"] == 2 and f["dst_host_srv_diff_host_rate"] == 0.5


def test_host_window_is_a_ring_of_255_and_counts_are_capped():
    w = Windows()
    for i in range(600):
        f = w.features(ended(i * 0.001, port=i, serror=i >= 300))
    assert f["count"] == 511 and f["dst_host_count"] == 255
    assert f["dst_host_serror_rate"] == 1.0  # only the last 255 (all serror) remain
    assert f["dst_host_same_src_port_rate"] == 0.0
