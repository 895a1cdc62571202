"""Features of the real public captures in ../shared/pcaps, checked against independent counts."""

from collections import Counter, defaultdict

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from desy.records import ROW_FIELDS
from desy.schema import FEATURE_NAMES, FLAGS, SERVICES
from tests.agent.helpers import extract_file
from tests.conftest import PCAPS


def scapy_payload_bytes(path):
    """TCP payload per direction, from scapy's dissection: the span of sequence numbers carrying
    data (first byte after the SYN, or the lowest data byte, to the highest), so that
    retransmissions count once, as Bro/Zeek count."""
    first, low, high = {}, {}, defaultdict(int)
    for pkt in rdpcap(str(path)):
        if IP in pkt and TCP in pkt:
            ip, seg = pkt[IP], pkt[TCP]
            key = (ip.src, seg.sport, ip.dst, seg.dport)
            size = ip.len - ip.ihl * 4 - seg.dataofs * 4
            if "S" in seg.flags:
                first[key] = seg.seq + 1
            if size:
                low[key] = min(low.get(key, seg.seq), seg.seq)
                high[key] = max(high[key], seg.seq + size)
    return defaultdict(int, {key: high[key] - first.get(key, low[key]) for key in low})


@pytest.fixture(scope="module")
def synflood():
    return extract_file(PCAPS / "synflood_spoofed.pcap")


def test_every_record_is_complete_and_in_vocabulary():
    records, _ = extract_file(PCAPS / "nmap_80_all.pcap")
    for record in records:
        assert tuple(record) == ROW_FIELDS
        assert record["service"] in SERVICES and record["flag"] in FLAGS
        assert all(0 <= record[k] <= 1 for k in FEATURE_NAMES if k.endswith("_rate"))


def test_spoofed_syn_flood_is_a_wall_of_half_open_connections(synflood):
    records, extractor = synflood
    assert extractor.counters.packets_malformed == 0
    flags = Counter(r["flag"] for r in records)
    assert flags["S0"] / len(records) > 0.99
    assert all(r["src_bytes"] == 0 and r["dst_bytes"] == 0 for r in records if r["flag"] == "S0")
    assert sum(r["count"] == 511 for r in records) / len(records) > 0.4
    assert sum(r["serror_rate"] == 1.0 for r in records) / len(records) > 0.99
    assert sum(r["dst_host_serror_rate"] == 1.0 for r in records) / len(records) > 0.99
    assert sum(r["dst_host_count"] == 255 for r in records) / len(records) > 0.99
    assert sum(r["dst_host_same_src_port_rate"] < 0.1 for r in records) / len(records) > 0.9


def test_nmap_payload_bytes_match_scapy_and_flags(tmp_path):
    path = PCAPS / "nmap_80_w_service_detection.pcap"
    records, _ = extract_file(path)
    expected = scapy_payload_bytes(path)
    tcp = [r for r in records if r["protocol_type"] == "tcp"]
    assert tcp
    for r in tcp:
        assert r["src_bytes"] == expected[(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"])]
        assert r["dst_bytes"] == expected[(r["dst_ip"], r["dst_port"], r["src_ip"], r["src_port"])]
    assert {r["service"] for r in tcp} <= {"http", "http_443", "private", "other"}
    assert "RSTO" in {r["flag"] for r in tcp}


def test_loopback_http_bytes_and_service():
    records, _ = extract_file(PCAPS / "simple_http_loopback.pcap")
    assert [(r["flag"], r["service"], r["src_bytes"], r["dst_bytes"]) for r in records] == [
        ("SF", "other", 493, 200),
        ("SF", "other", 448, 655),
    ]
    assert all(r["logged_in"] == 1 for r in records)
    assert (
        records[1]["count"] == 2
        and records[1]["srv_count"] == 2
        and records[1]["same_srv_rate"] == 1.0
    )


def test_teardrop_counts_three_wrong_fragments():
    records, _ = extract_file(PCAPS / "teardrop.pcap")
    fragments = [r for r in records if r["wrong_fragment"]]
    assert len(fragments) == 1
    assert fragments[0]["wrong_fragment"] == 3 and fragments[0]["protocol_type"] == "udp"
    assert (
        fragments[0]["src_bytes"] == 28
    )  # as all 892 teardrop records: the first fragment's UDP payload
    pings = {r["service"]: r["src_bytes"] for r in records if r["protocol_type"] == "icmp"}
    assert pings == {"eco_i": 64, "ecr_i": 64}  # whole ICMP message: 8-byte header + 56 data bytes


def test_two_way_flag_combinations_reach_every_state():
    records, _ = extract_file(PCAPS / "tcp_two_way_all_flags.pcap")
    flags = {r["flag"] for r in records}
    assert flags >= {
        "S0",
        "REJ",
        "SF",
        "S1",
        "S2",
        "S3",
        "RSTO",
        "RSTR",
        "RSTOS0",
        "SH",
        "RSTRH",
        "SHR",
        "OTH",
    }


def test_pcapng_and_whois():
    records, _ = extract_file(PCAPS / "netcat_tcp_anon.pcapng")
    assert [r["flag"] for r in records] == ["SF", "SF"]
    assert records[1]["src_bytes"] > 9000 and records[1]["duration"] > 10
    (whois,) = extract_file(PCAPS / "whois.pcap")[0]
    assert (whois["service"], whois["flag"], whois["src_bytes"]) == ("whois", "SF", 10)


def test_udp_scan_gives_one_connection_per_port():
    records, _ = extract_file(PCAPS / "masscan_udp_0_1000.pcap")
    udp = [r for r in records if r["protocol_type"] == "udp"]
    assert len({r["dst_port"] for r in udp}) == len(udp) > 900
    assert max(r["count"] for r in udp) > 100 and max(r["diff_srv_rate"] for r in udp) > 0
