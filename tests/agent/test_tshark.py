"""The basic features of the real public captures, checked against Wireshark's dissector (tshark).

tshark decodes each capture on its own, and its packets are grouped into connections here: TCP by
Wireshark's conversation index (tcp.stream), UDP by udp.stream, ICMP one message per connection;
the originator is the sender of the first packet (for TCP, unless that packet is a SYN-ACK). On
the captures below no conversation idles past one of DeSy's timeouts (TCP 120 s, UDP 30 s, an
unanswered SYN 5 s, 2 s after a close), so each Wireshark conversation is exactly one DeSy
connection (were one split, the sets of connections would differ). Connections match on
(protocol, endpoints, start time to the microsecond), and every value is compared exactly.

Left out: tcp_two_way_all_flags.pcap from the per-connection match, because its exchanges carry
arbitrary flag combinations (SYN+RST+FIN in one packet, a SYN after a FIN) and where one
connection ends and the next begins is then a convention: Zeek's (DeSy's) and Wireshark's (a new
stream at a SYN on a closed conversation) cut 256 of its 4,465 connections differently. It is
used for the URG counts per socket pair instead, which do not depend on the cut. The flag (Zeek's
connection state) has no counterpart in tshark and is not compared.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

from capture_agent.extractor import extract_file
from desy.records import ROW_FIELDS
from tests.conftest import PCAPS

#: Captures whose connections are compared one by one (all the public ones but the two-way
#: flag combinations): HTTP on loopback, whois, netcat in pcapng, nmap with retransmitted and
#: out-of-order segments and ICMP errors, every one-way flag combination (URG), masscan TCP and
#: UDP scans, teardrop's overlapping fragments, a SYN-ACK reflection with a fragmented UDP
#: datagram, and a spoofed SYN flood with retransmitted SYNs.
CAPTURES = (
    "simple_http_loopback.pcap",
    "whois.pcap",
    "netcat_tcp_anon.pcapng",
    "nmap_80_all.pcap",
    "nmap_80_w_service_detection.pcap",
    "tcp_one_way_all_flags.pcap",
    "masscan_tcp_0_1000.pcap",
    "masscan_udp_0_1000.pcap",
    "teardrop.pcap",
    "tcp_reflection_synack.pcap",
    "synflood_spoofed.pcap",
)
#: What tshark prints of each frame (first occurrence: the outer header of an ICMP error).
FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.id",
    "ip.len",
    "ip.hdr_len",
    "ip.flags.mf",
    "ip.frag_offset",
    "tcp.stream",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.flags.urg",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "udp.stream",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
)
RETRANSMISSION = (
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
)
#: tshark's reports of a faulty IP reassembly.
FRAGMENT_FAULTS = (
    "ip.fragment.overlap",
    "ip.fragment.overlap.conflict",
    "ip.fragment.toolongfragment",
    "ip.fragment.multipletails",
    "ip.fragment.error",
)
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp"}
COMPARED = ("src_bytes", "dst_bytes", "duration", "land", "urgent", "end_time")

Frame = dict[str, str]
#: (protocol_type, src_ip, src_port, dst_ip, dst_port, start time in microseconds)
Key = tuple[str, str, int, str, int, int]
#: An IP datagram: (src, dst, protocol, id).
Datagram = tuple[str, str, str, str]


def tshark(path: Path, fields: tuple[str, ...], *options: str) -> list[Frame]:
    """tshark's fields of every frame of the capture (empty where a frame lacks one), with TCP
    sequence analysis (which marks retransmissions) on whatever the user's preferences say."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: this cross-check needs it (apt-get install tshark)")
    argv = ["tshark", "-r", str(path), "-n", "-o", "tcp.analyze_sequence_numbers:TRUE", *options]
    argv += ["-T", "fields", "-E", "separator=,", "-E", "occurrence=f"]
    for name in fields:
        argv += ["-e", name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"tshark failed on {path.name}: {done.stderr}"
    return [dict(zip(fields, line.split(","))) for line in done.stdout.splitlines()]


def microseconds(seconds: Decimal | float) -> int:
    """A time to the microsecond, the key connections are matched on."""
    return round(Decimal(seconds) * 1_000_000)


def payload(frame: Frame, protocol: str) -> int:
    """What a packet adds to src_bytes/dst_bytes, from tshark's dissection. TCP: tcp.len, 0 for a
    segment tshark marks as a (fast, spurious) retransmission; this equals Bro's count of the span
    of sequence numbers carrying data when no byte of the span is missing from the capture and a
    retransmission repeats only bytes already seen, as on these captures (nmap's out-of-order and
    retransmitted segments included). UDP: udp.length minus its 8-byte header. ICMP: the whole
    message (IP payload). The first fragment of a fragmented datagram counts only its own bytes
    (docs/features.md: a fragmented datagram counts with its first fragment only), and a later
    fragment nothing."""
    if frame["ip.frag_offset"] not in ("", "0"):
        return 0
    fragmented = frame["ip.flags.mf"] == "1"
    ip_payload = int(frame["ip.len"]) - int(frame["ip.hdr_len"])
    if protocol == "tcp":
        return 0 if any(frame[name] for name in RETRANSMISSION) else int(frame["tcp.len"])
    if protocol == "udp":
        return ip_payload - 8 if fragmented else int(frame["udp.length"]) - 8
    return ip_payload


def endpoints(frame: Frame, protocol: str) -> tuple[str, int, str, int]:
    """The frame's (src_ip, src_port, dst_ip, dst_port), ports 0 for ICMP."""
    if protocol == "icmp":
        return frame["ip.src"], 0, frame["ip.dst"], 0
    return (
        frame["ip.src"],
        int(frame[f"{protocol}.srcport"]),
        frame["ip.dst"],
        int(frame[f"{protocol}.dstport"]),
    )


def conversations(frames: list[Frame]) -> dict[tuple[str, str], list[Frame]]:
    """The IPv4 frames grouped by Wireshark's conversation (TCP, UDP) or message (ICMP), in
    capture order; a fragment after the first joins the first fragment's group."""
    groups: dict[tuple[str, str], list[Frame]] = defaultdict(list)
    owner: dict[Datagram, tuple[str, str]] = {}
    for frame in frames:
        protocol = PROTOCOLS.get(frame["ip.proto"])
        if protocol is None:
            continue
        datagram = (frame["ip.src"], frame["ip.dst"], frame["ip.proto"], frame["ip.id"])
        if frame["ip.frag_offset"] not in ("", "0"):
            group = owner[datagram]  # KeyError: its first fragment is not in the capture
        elif protocol == "icmp":
            group = ("icmp", frame["frame.number"])
        else:
            group = (protocol, frame[f"{protocol}.stream"])
        if frame["ip.flags.mf"] == "1":
            owner[datagram] = group
        groups[group].append(frame)
    return groups


@cache
def expected_connections(path: Path) -> dict[Key, dict]:
    """Per connection, the basic features as tshark's dissection gives them, and the datagrams
    of its fragments (for wrong_fragment)."""
    connections = {}
    for (protocol, _), frames in conversations(
        tshark(path, FIELDS, "-o", "ip.defragment:FALSE")
    ).items():
        first = frames[0]
        src, sport, dst, dport = endpoints(first, protocol)
        if protocol == "tcp" and first["tcp.flags.syn"] == first["tcp.flags.ack"] == "1":
            src, sport, dst, dport = dst, dport, src, sport
        sent = defaultdict(int)
        for frame in frames:
            size = payload(frame, protocol)  # 0 for a later fragment, which has no ports
            if size:
                sent[endpoints(frame, protocol)[:2] == (src, sport)] += size
        times = [Decimal(frame["frame.time_epoch"]) for frame in frames]
        key = (protocol, src, sport, dst, dport, microseconds(times[0]))
        connections[key] = {
            "src_bytes": sent[True],
            "dst_bytes": sent[False],
            "duration": int(times[-1] - times[0]),
            "land": int(src == dst and sport == dport),
            "urgent": sum(frame["tcp.flags.urg"] == "1" for frame in frames),
            "end_time": microseconds(times[-1]),
            "datagrams": {
                (f["ip.src"], f["ip.dst"], f["ip.proto"], f["ip.id"])
                for f in frames
                if f["ip.flags.mf"] == "1" or f["ip.frag_offset"] not in ("", "0")
            },
        }
    return connections


@cache
def desy_connections(path: Path) -> dict[Key, dict]:
    """DeSy's records of the capture (capture_agent.extractor.extract_file), keyed as
    expected_connections keys them, with end_time to the microsecond."""
    records = [dict(zip(ROW_FIELDS, row)) for rows, _ in extract_file(path) for row in rows]
    connections = {}
    for r in records:
        key = (
            r["protocol_type"],
            r["src_ip"],
            r["src_port"],
            r["dst_ip"],
            r["dst_port"],
            microseconds(r["start_time"]),
        )
        assert key not in connections, f"two connections {key}"
        connections[key] = {**r, "end_time": microseconds(r["end_time"])}
    return connections


def faulty_datagrams(path: Path) -> set[Datagram]:
    """The datagrams whose reassembly tshark reports as faulty (overlapping fragments, a
    fragment past the end, several last fragments)."""
    frames = tshark(path, ("ip.src", "ip.dst", "ip.proto", "ip.id", *FRAGMENT_FAULTS))
    return {
        (f["ip.src"], f["ip.dst"], f["ip.proto"], f["ip.id"])
        for f in frames
        if any(f[name] for name in FRAGMENT_FAULTS)
    }


@pytest.mark.parametrize("capture", CAPTURES)
def test_basic_features_match_tshark(capture):
    """The same connections, each with tshark's src_bytes, dst_bytes, duration, land, urgent and
    end time."""
    path = PCAPS / capture
    expected = expected_connections(path)
    records = desy_connections(path)
    assert len(records) == len(expected)
    assert records.keys() == expected.keys()
    wrong = {
        key: {name: (records[key][name], want[name]) for name in COMPARED}
        for key, want in expected.items()
        if any(records[key][name] != want[name] for name in COMPARED)
    }
    assert not wrong, "DeSy's value, tshark's"


@pytest.mark.parametrize("capture", ["teardrop.pcap", "tcp_reflection_synack.pcap"])
def test_wrong_fragment_where_tshark_finds_a_faulty_reassembly(capture):
    """wrong_fragment is nonzero exactly for the connections holding a datagram whose reassembly
    tshark reports as faulty: teardrop's overlapping fragments, not the reflection capture's
    well-formed fragmented SNMP reply."""
    path = PCAPS / capture
    expected = expected_connections(path)
    records = desy_connections(path)
    faulty = faulty_datagrams(path)
    fragmented = {key for key, want in expected.items() if want["datagrams"]}
    assert len(fragmented) == 1
    assert {key for key in fragmented if records[key]["wrong_fragment"]} == {
        key for key in fragmented if expected[key]["datagrams"] & faulty
    }
    assert not any(records[key]["wrong_fragment"] for key in expected.keys() - fragmented)


def test_urgent_packets_per_socket_pair_on_flag_combinations():
    """On tcp_two_way_all_flags.pcap, where DeSy and Wireshark cut connections differently, the
    URG packets of each socket pair are all counted, once, by DeSy's connections of that pair."""
    path = PCAPS / "tcp_two_way_all_flags.pcap"
    expected: dict[frozenset, int] = defaultdict(int)
    for frame in tshark(path, FIELDS):
        if frame["ip.proto"] == "6":
            pair = frozenset([endpoints(frame, "tcp")[:2], endpoints(frame, "tcp")[2:]])
            expected[pair] += frame["tcp.flags.urg"] == "1"
    counted: dict[frozenset, int] = defaultdict(int)
    for r in desy_connections(path).values():
        counted[frozenset([(r["src_ip"], r["src_port"]), (r["dst_ip"], r["dst_port"])])] += r[
            "urgent"
        ]
    assert sum(expected.values()) > 3000
    assert counted == expected
