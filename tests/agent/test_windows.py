"""Traffic-window semantics: inclusion of the connection itself, 2 s expiry, 255-ring, distinct services."""

from capture_agent.windows import Entry, TrafficWindows

H1, H2 = b"\x0a\0\0\x01", b"\x0a\0\0\x02"


def entry(end, host=H1, service="http", port=1000, serror=False, rerror=False):
    return Entry(end=end, host=host, src_port=port, service=service, serror=serror, rerror=rerror)


def test_connection_alone_counts_itself():
    f = TrafficWindows().features(entry(0.0))
    assert (f["count"], f["srv_count"], f["same_srv_rate"], f["diff_srv_rate"]) == (1, 1, 1.0, 0.0)
    assert (f["dst_host_count"], f["dst_host_srv_count"], f["dst_host_same_src_port_rate"]) == (1, 1, 1.0)


def test_two_second_window_expires():
    w = TrafficWindows()
    w.features(entry(0.0))
    w.features(entry(1.0))
    assert w.features(entry(2.5))["count"] == 2  # the one at 0.0 is older than 2 s
    assert w.features(entry(2.6))["dst_host_count"] == 4  # the host window has no time limit


def test_rates_and_distinct_services():
    w = TrafficWindows()
    w.features(entry(0.0, service="ftp", serror=True))
    w.features(entry(0.1, service="smtp", rerror=True))
    w.features(entry(0.2, service="http", host=H2))
    f = w.features(entry(0.3, service="http"))
    assert f["count"] == 3 and f["srv_count"] == 2
    assert f["serror_rate"] == 0.33 and f["rerror_rate"] == 0.33
    assert f["same_srv_rate"] == 0.33 and f["diff_srv_rate"] == 0.67
    assert f["srv_diff_host_rate"] == 0.5
    assert f["dst_host_srv_count"] == 2 and f["dst_host_srv_diff_host_rate"] == 0.5


def test_host_window_is_a_ring_of_255_and_counts_are_capped():
    w = TrafficWindows()
    for i in range(600):
        f = w.features(entry(i * 0.001, port=i, serror=i >= 300))
    assert f["count"] == 511 and f["dst_host_count"] == 255
    assert f["dst_host_serror_rate"] == 1.0  # only the last 255 (all serror) remain
    assert f["dst_host_same_src_port_rate"] == 0.0
