"""The 13 Bro/Zeek connection states, from handshakes built packet by packet."""

import pytest

from tests.agent.helpers import CLIENT, SERVER, extract_packets, tcp

C, S = (CLIENT, SERVER, 40000, 80), (SERVER, CLIENT, 80, 40000)


def c(flags, payload=b"", seq=1000, t=0.0):
    return tcp(*C, flags, seq=seq, payload=payload, t=t)


def s(flags, payload=b"", seq=5000, t=0.0):
    return tcp(*S, flags, seq=seq, payload=payload, t=t)


HANDSHAKE = [c("S"), s("SA"), c("A", seq=1001)]
CASES = {
    "S0": [c("S")],
    "REJ": [c("S"), s("RA")],
    "SF": HANDSHAKE + [c("FA", seq=1001), s("FA", seq=5001), c("A", seq=1002)],
    "S1": HANDSHAKE,
    "S2": HANDSHAKE + [c("FA", seq=1001)],
    "S3": HANDSHAKE + [s("FA", seq=5001)],
    "RSTO": HANDSHAKE + [c("R", seq=1001)],
    "RSTR": HANDSHAKE + [s("R", seq=5001)],
    "RSTOS0": [c("S"), c("R", seq=1001)],
    "SH": [c("S"), c("F", seq=1001)],
    "RSTRH": [s("SA"), s("R", seq=5001)],
    "SHR": [s("SA"), s("F", seq=5001)],
    "OTH": [c("A", seq=1001, payload=b"midstream"), s("A", seq=5001)],
}


@pytest.mark.parametrize("flag", sorted(CASES))
def test_flag(flag):
    (record,) = extract_packets(CASES[flag])
    assert record["flag"] == flag


def test_synack_first_makes_the_synack_sender_the_responder():
    (record,) = extract_packets(CASES["RSTRH"])
    assert (record["src_ip"], record["dst_ip"], record["dst_port"]) == (CLIENT, SERVER, 80)
    assert record["service"] == "http"


def test_payload_bytes_count_retransmissions_once():
    packets = HANDSHAKE + [
        c("PA", b"GET / HTTP/1.0\r\n\r\n", seq=1001),
        c("PA", b"GET / HTTP/1.0\r\n\r\n", seq=1001),  # retransmission
        s("PA", b"HTTP/1.0 200 OK\r\n\r\nhello", seq=5001),
        c("FA", seq=1019),
        s("FA", seq=5025),
        c("A", seq=1020),
    ]
    (record,) = extract_packets(packets)
    assert record["src_bytes"] == 18 and record["dst_bytes"] == 24
    assert record["flag"] == "SF" and record["logged_in"] == 1


def test_trailing_ack_after_close_does_not_open_a_new_connection():
    packets = CASES["SF"] + [s("A", seq=5002, t=0.5)]
    assert len(extract_packets(packets)) == 1


def test_land_and_urgent():
    same = ("10.9.9.9", "10.9.9.9", 139, 139)
    records = extract_packets([tcp(*same, "S"), tcp(*C, "SU", t=0.1)])
    land = next(r for r in records if r["src_ip"] == "10.9.9.9")
    other = next(r for r in records if r["src_ip"] == CLIENT)
    assert land["land"] == 1 and other["land"] == 0
    assert other["urgent"] == 1
