"""Content features from cleartext dialogues, through whole TCP connections."""

from tests.agent.helpers import CLIENT, SERVER, extract_packets, tcp


def conversation(port, lines):
    """A full TCP connection to port where lines alternate client, server payloads."""
    c_seq, s_seq = 1001, 5001
    packets = [
        tcp(CLIENT, SERVER, 40000, port, "S", seq=1000),
        tcp(SERVER, CLIENT, port, 40000, "SA", seq=5000),
        tcp(CLIENT, SERVER, 40000, port, "A", seq=c_seq),
    ]
    for index, (who, data) in enumerate(lines):
        t = 0.01 * (index + 1)
        if who == "c":
            packets.append(tcp(CLIENT, SERVER, 40000, port, "PA", seq=c_seq, payload=data, t=t))
            c_seq += len(data)
        else:
            packets.append(tcp(SERVER, CLIENT, port, 40000, "PA", seq=s_seq, payload=data, t=t))
            s_seq += len(data)
    packets += [
        tcp(CLIENT, SERVER, 40000, port, "FA", seq=c_seq, t=1),
        tcp(SERVER, CLIENT, port, 40000, "FA", seq=s_seq, t=1),
    ]
    (record,) = extract_packets(packets)
    return record


def test_ftp_password_guessing():
    lines = [("s", b"220 ready\r\n")]
    for _ in range(3):
        lines += [
            ("c", b"USER admin\r\n"),
            ("s", b"331 password\r\n"),
            ("c", b"PASS x\r\n"),
            ("s", b"530 Login incorrect.\r\n"),
        ]
    record = conversation(21, lines)
    assert record["service"] == "ftp"
    assert (record["num_failed_logins"], record["logged_in"], record["is_guest_login"]) == (3, 0, 0)


def test_ftp_anonymous_is_guest_login():
    record = conversation(
        21,
        [
            ("s", b"220 ready\r\n"),
            ("c", b"USER anonymous\r\n"),
            ("s", b"331 ok\r\n"),
            ("c", b"PASS a@b\r\n"),
            ("s", b"230 Login successful.\r\n"),
            ("c", b"STOR x.txt\r\n"),
        ],
    )
    assert (record["logged_in"], record["is_guest_login"], record["num_file_creations"]) == (
        1,
        1,
        1,
    )


def test_telnet_root_shell_and_su():
    record = conversation(
        23,
        [
            ("s", b"login: "),
            ("c", b"bob\r\n"),
            ("s", b"Password: "),
            ("c", b"pw\r\n"),
            ("s", b"Last login: Mon\r\n$ "),
            ("c", b"su root\r\n"),
            ("s", b"Password: "),
            ("c", b"toor\r\n"),
            ("s", b"# "),
            ("c", b"cat /etc/shadow\r\n"),
        ],
    )
    assert record["logged_in"] == 1 and record["su_attempted"] == 1 and record["root_shell"] == 1
    assert record["num_access_files"] == 1 and record["hot"] >= 2 and record["num_root"] > 0


def test_http_request_is_logged_in_and_unknown_service_is_not_inspected():
    http = conversation(
        80, [("c", b"GET /cgi-bin/test HTTP/1.0\r\n\r\n"), ("s", b"HTTP/1.0 200 OK\r\n\r\n")]
    )
    assert (http["logged_in"], http["hot"]) == (1, 1)
    other = conversation(
        9999, [("c", b"GET /cgi-bin/x HTTP/1.0\r\n\r\n"), ("s", b"HTTP/1.0 200 OK\r\n\r\n")]
    )
    assert (other["service"], other["logged_in"], other["hot"]) == ("other", 1, 0)


def test_ftp_hot_counts_transfers_up_to_30():
    lines = [
        ("s", b"220 ready\r\n"),
        ("c", b"USER bob\r\n"),
        ("s", b"331 ok\r\n"),
        ("c", b"PASS pw\r\n"),
        ("s", b"230 Login successful.\r\n"),
    ]
    for index in range(40):
        lines += [
            ("c", b"PORT 10,1,0,1,4,%d\r\n" % index),
            ("s", b"200 ok\r\n"),
            ("c", b"RETR file%d\r\n" % index),
            ("s", b"226 done\r\n"),
        ]
    record = conversation(21, lines)
    assert (record["hot"], record["logged_in"], record["is_guest_login"]) == (30, 1, 0)
