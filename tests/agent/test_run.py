"""`desy-agent run --pcap` against a real HTTP server: logs, spool and retry, signals."""

from __future__ import annotations

import json
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path

import psutil
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import RawPcapReader, RawPcapWriter, rdpcap

from tests.agent.classify_server import ClassifyServer
from tests.agent.helpers import AGENT, agent_argv, agent_run, extract_file, extracted_rows
from tests.conftest import PCAPS, free_port


def test_run_logs_one_verdict_per_connection(tmp_path):
    pcap = PCAPS / "nmap_80_all.pcap"
    with ClassifyServer(token="s3cret") as server:
        result = agent_run(pcap, server.url, tmp_path / "logs", token="s3cret")
    assert result.returncode == 0, result.stderr
    connections = extracted_rows(pcap, tmp_path)
    flows = [
        json.loads(line) for line in (tmp_path / "logs" / "flows.jsonl").read_text().splitlines()
    ]
    assert len(flows) == connections == len(server.received)
    assert all(
        f["agent_id"] == "test-agent" and f["verdict"]["model_version"] == "7" for f in flows
    )
    assert {f["verdict"]["label"] for f in flows} <= {"normal", "attack"}
    assert len((tmp_path / "logs" / "traffic.txt").read_text().splitlines()) == connections
    assert len(rdpcap(str(tmp_path / "logs" / "capture.pcap"))) == 431
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["flows_classified"] == connections and summary["flows_lost"] == 0
    assert summary["packets_seen"] == 431 and summary["packets_written_pcap"] == 431


def test_wrong_token_fails_and_keeps_the_flows_for_the_next_run(tmp_path):
    with ClassifyServer(token="right") as server:
        result = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs", token="wrong")
        assert result.returncode == 1
        assert "HTTP 401" in result.stderr and "check the token" in result.stderr
        summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
        assert summary["flows_spooled"] == 1 and summary["flows_rejected"] == 0
        again = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs", token="right")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "logs" / "summary.json").read_text())["flows_classified"] == 2


def test_unreadable_capture_fails_with_a_clear_error(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file" * 10)
    with ClassifyServer() as server:
        result = agent_run(garbage, server.url, tmp_path / "logs")
    assert result.returncode == 1
    assert "not a readable pcap" in result.stderr and "Traceback" not in result.stderr


def test_only_the_records_the_server_rejects_are_dropped(tmp_path):
    total = extracted_rows(PCAPS / "masscan_tcp_0_1000.pcap", tmp_path)
    for named in (True, False):  # the server names them, or the agent finds them by halving
        log_dir = tmp_path / f"logs-{named}"
        with ClassifyServer(
            reject=lambda f: f["dst_port"] % 97 == 0, name_rejected=named
        ) as server:
            result = agent_run(PCAPS / "masscan_tcp_0_1000.pcap", server.url, log_dir)
            received = server.received
        summary = json.loads((log_dir / "summary.json").read_text())
        rejected = summary["flows_rejected"]
        assert result.returncode == 1 and "rejected by the server" in result.stderr
        assert (
            0 < rejected < 20 and summary["flows_classified"] == len(received) == total - rejected
        )
        assert all(f["dst_port"] % 97 for f in received)


def test_sender_exits_when_the_main_process_is_killed(tmp_path):
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen(
        agent_argv(
            PCAPS / "synflood_spoofed.pcap",
            f"http://127.0.0.1:{free_port()}",
            log_dir,
            "--drain-timeout",
            "600",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list((log_dir / "spool").glob("batch-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (sender,) = psutil.Process(proc.pid).children()
    proc.kill()
    proc.wait()
    psutil.wait_procs([sender], timeout=15)
    assert not sender.is_running() or sender.status() == psutil.STATUS_ZOMBIE
    assert list((log_dir / "spool").glob("batch-*.json"))


def test_server_down_then_up_spools_and_classifies_everything(tmp_path):
    port = free_port()
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen(
        agent_argv(
            PCAPS / "masscan_tcp_0_1000.pcap",
            f"http://127.0.0.1:{port}",
            log_dir,
            "--drain-timeout",
            "60",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not list((log_dir / "spool").glob("batch-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list((log_dir / "spool").glob("batch-*.json")), (
        "nothing was spooled while the server was down"
    )
    with ClassifyServer(port=port) as server:
        _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["flows_lost"] == 0 and summary["flows_spooled"] == 0
    assert (
        summary["flows_classified"] == summary["connections_emitted"] == len(server.received) > 1000
    )
    assert not list((log_dir / "spool").glob("batch-*.json"))
    assert "server unavailable" in stderr


def test_spool_limit_loses_flows_and_says_so(tmp_path):
    result = agent_run(
        PCAPS / "synflood_spoofed.pcap",
        f"http://127.0.0.1:{free_port()}",
        tmp_path / "logs",
        "--spool-mb",
        "1",
        "--drain-timeout",
        "0",
    )
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert summary["flows_lost"] > 0 and summary["flows_spooled"] > 0
    assert summary["flows_lost"] + summary["flows_spooled"] == summary["connections_emitted"]
    assert "spool limit" in result.stderr


def test_capture_pcap_is_valid_after_sigterm(tmp_path):
    with ClassifyServer() as server:
        proc = subprocess.Popen(
            [
                *AGENT,
                "run",
                "--pcap",
                str(PCAPS / "synflood_spoofed.pcap"),
                "--server",
                server.url,
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    check = subprocess.run(
        ["tcpdump", "-nr", str(tmp_path / "logs" / "capture.pcap")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    summary = json.loads((tmp_path / "logs" / "summary.json").read_text())
    assert len(check.stdout.splitlines()) == summary["packets_written_pcap"] > 0


def _pcapng_two_linktypes(path: Path) -> Path:
    """A pcapng whose first interface is Linux SLL (113) and second Ethernet (1), one TCP SYN each."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    ip_tcp = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=1234, dport=80, flags="S"))
    frames = [(0, b"\0\0\0\1\0\6" + b"\2" * 8 + b"\x08\0" + ip_tcp), (1, bytes(Ether() / ip_tcp))]
    data = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    data += block(1, struct.pack("<HHI", 113, 0, 262144)) + block(
        1, struct.pack("<HHI", 1, 0, 262144)
    )
    for n, (interface, frame) in enumerate(frames):
        ts = (1_700_000_000 + n) * 1_000_000
        data += block(
            6,
            struct.pack("<IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
            + frame,
        )
    path.write_bytes(data)
    return path


def test_each_link_type_gets_its_own_capture_file(tmp_path):
    pcap = _pcapng_two_linktypes(tmp_path / "two.pcapng")
    with ClassifyServer() as server:
        result = agent_run(pcap, server.url, tmp_path / "logs")
    assert result.returncode == 0, result.stderr
    assert len(rdpcap(str(tmp_path / "logs" / "capture.pcap"))) == 1
    assert len(rdpcap(str(tmp_path / "logs" / "capture-linktype1.pcap"))) == 1


def test_logs_are_private_and_a_planted_symlink_is_refused(tmp_path):
    log_dir = tmp_path / "logs"
    with ClassifyServer() as server:
        assert agent_run(PCAPS / "whois.pcap", server.url, log_dir).returncode == 0
        assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
        for name in ("capture.pcap", "flows.jsonl", "traffic.txt", "summary.json"):
            assert stat.S_IMODE((log_dir / name).stat().st_mode) == 0o600, name
        target = tmp_path / "precious"
        target.write_text("keep me")
        (log_dir / "capture.pcap").unlink()
        (log_dir / "capture.pcap").symlink_to(target)
        result = agent_run(PCAPS / "whois.pcap", server.url, log_dir)
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert target.read_text() == "keep me"


def test_token_is_not_sent_in_clear_text_to_another_host(tmp_path):
    result = agent_run(
        PCAPS / "whois.pcap", "http://192.0.2.1:3000", tmp_path / "logs", token="s3cret"
    )
    assert result.returncode == 2 and "clear text" in result.stderr


def test_tls_with_a_private_ca_and_a_certificate_that_does_not_verify(tmp_path):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    request = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*request.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    with ClassifyServer(token="t0k", tls=(str(cert), str(key))) as server:
        trusted = agent_run(
            PCAPS / "whois.pcap", server.url, tmp_path / "ok", "--ca-cert", str(cert), token="t0k"
        )
        untrusted = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "bad", token="t0k")
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["flows_classified"] == 1
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr
    assert json.loads((tmp_path / "bad" / "summary.json").read_text())["flows_spooled"] == 1


def pcap_slice(log_dir: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AGENT, "pcap-slice", "--log-dir", str(log_dir), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pcap_slice_cuts_one_connection_out_of_the_agents_capture(tmp_path):
    with ClassifyServer() as server:
        result = agent_run(PCAPS / "simple_http_loopback.pcap", server.url, tmp_path / "logs")
    assert result.returncode == 0, result.stderr
    flows = [
        json.loads(line) for line in (tmp_path / "logs" / "flows.jsonl").read_text().splitlines()
    ]
    flow = next(f for f in flows if f["flag"] == "SF" and f["src_bytes"] > 0)
    option = {
        "src_ip": "--src",
        "dst_ip": "--dst",
        "start_time": "--start",
        "end_time": "--end",
        "src_port": "--src-port",
        "dst_port": "--dst-port",
    }
    options = [arg for key, name in option.items() for arg in (name, str(flow[key]))]
    out = tmp_path / "one.pcap"
    done = pcap_slice(tmp_path / "logs", "-o", str(out), *options)
    assert done.returncode == 0, done.stderr
    (again,) = extract_file(out)[0]  # the slice holds that connection and nothing else
    assert {
        k: again[k] for k in ("src_ip", "dst_port", "flag", "src_bytes", "dst_bytes", "duration")
    } == {k: flow[k] for k in ("src_ip", "dst_port", "flag", "src_bytes", "dst_bytes", "duration")}
    window = ("--start", "0", "--end", "1")
    missing = pcap_slice(
        tmp_path / "logs", "-o", str(out), "--src", "192.0.2.1", "--dst", "192.0.2.2", *window
    )
    assert missing.returncode == 1 and "no packet" in missing.stderr
    bad = pcap_slice(tmp_path / "logs", "--src", "host-a", "--dst", "192.0.2.2", *window)
    assert bad.returncode == 2 and "not an IP address: 'host-a'" in bad.stderr


def test_pcap_slice_joins_a_connection_split_over_rotated_files(tmp_path):
    """A connection that began before capture.pcap was rotated: its first packets are in
    capture.pcap.1, the rest in capture.pcap; the slice holds all of them, in order."""
    pcap = PCAPS / "simple_http_loopback.pcap"
    flow = extract_file(pcap)[0][-1]
    middle = (flow["start_time"] + flow["end_time"]) / 2
    reader = RawPcapReader(str(pcap))
    logs = tmp_path / "logs"
    logs.mkdir()
    older, newer = (
        RawPcapWriter(str(logs / name), linktype=reader.linktype)
        for name in ("capture.pcap.1", "capture.pcap")
    )
    for writer in (older, newer):
        writer.write_header(None)
    for data, meta in reader:
        when = meta.sec + meta.usec / 1e6
        (older if when < middle else newer).write_packet(data, sec=meta.sec, usec=meta.usec)
    for writer in (older, newer):
        writer.close()
    ends = ("--start", str(flow["start_time"]), "--end", str(flow["end_time"]))
    ports = ("--src-port", str(flow["src_port"]), "--dst-port", str(flow["dst_port"]))
    out = tmp_path / "one.pcap"
    done = pcap_slice(
        logs, "-o", str(out), "--src", flow["src_ip"], "--dst", flow["dst_ip"], *ends, *ports
    )
    assert done.returncode == 0, done.stderr
    (again,) = extract_file(out)[0]  # the whole connection: its own features as in the capture
    own = ("src_port", "flag", "src_bytes", "dst_bytes", "duration", "start_time", "end_time")
    assert {k: again[k] for k in own} == {k: flow[k] for k in own}
