"""Fragment faults and byte counts, as the dataset records teardrop and ping of death."""

from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.l2 import Ether

from tests.agent.helpers import extract_packets


def frames(datagram, size=1480):
    out = [Ether() / part for part in fragment(datagram, fragsize=size)]
    for index, frame in enumerate(out):
        frame.time = 1_700_000_000 + index * 0.001
    return out


def test_ping_of_death_is_one_message_with_one_wrong_fragment():
    (record,) = extract_packets(
        frames(IP(src="10.0.0.9", dst="10.0.0.1", id=9) / ICMP(type=8) / (b"x" * 65510))
    )
    assert (record["service"], record["wrong_fragment"], record["src_bytes"]) == ("eco_i", 1, 1480)


def test_ordinary_fragmentation_has_no_faults():
    (record,) = extract_packets(
        frames(
            IP(src="10.0.0.9", dst="10.0.0.1", id=10) / UDP(sport=5000, dport=53) / (b"y" * 4000)
        )
    )
    assert (record["service"], record["wrong_fragment"]) == ("domain_u", 0)
    assert (
        record["src_bytes"] == 1472
    )  # the first fragment's UDP payload, as NSL-KDD counts fragments


def test_overlapping_fragments_count_once_per_fault():
    first = (
        Ether()
        / IP(src="10.0.0.9", dst="10.0.0.1", id=11, flags="MF", frag=0, proto=17)
        / (b"\x13\x88\x13\x89\x00\x30\x00\x00" + b"z" * 40)
    )
    overlapping = (
        Ether() / IP(src="10.0.0.9", dst="10.0.0.1", id=11, flags=0, frag=3, proto=17) / (b"w" * 8)
    )
    first.time, overlapping.time = 1.0, 1.001
    (record,) = extract_packets([first, overlapping])
    assert record["wrong_fragment"] == 3 and record["protocol_type"] == "udp"
