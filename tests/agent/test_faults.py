"""`desy-agent run` under faults: batch ids across resends, full disks, a failing sender, bad
token files, corrupt spool files, restarts on the same log directory, timestamps pcap cannot hold.
Real agent processes, a real HTTP server, real tmpfs mounts and signals."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import RawPcapReader

from desy.records import BATCH_ID_PATTERN
from tests.agent.classify_server import ClassifyServer
from tests.agent.helpers import (
    AGENT,
    add_up,
    agent_argv,
    agent_run,
    extracted_rows,
    summary_counts,
)
from tests.conftest import PCAPS, free_port


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a 2 MB tmpfs at a path (made by the test's call) and unmount it afterwards."""
    mounted = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def packets_in(path: Path) -> int:
    with RawPcapReader(str(path)) as reader:
        return sum(1 for _ in reader)


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


# Case 2, the agent's half: batch ids


def test_every_attempt_of_a_batch_or_of_its_parts_carries_the_same_id(tmp_path):
    """503s (with Retry-After) and 400s that split batches: every id is valid, an id that got a
    503 is sent again, and the flows answered under distinct ids are those classified, once."""
    total = extracted_rows(PCAPS / "masscan_tcp_0_1000.pcap", tmp_path)
    with ClassifyServer(
        reject=lambda f: f["dst_port"] % 97 == 0,
        name_rejected=False,
        fail=lambda n: n in (2, 5, 11, 12),
    ) as server:
        result = agent_run(
            PCAPS / "masscan_tcp_0_1000.pcap",
            server.url,
            tmp_path / "logs",
            "--drain-timeout",
            "60",
        )
    counts = summary_counts(result.stderr)
    assert result.returncode == 1 and "rejected by the server" in result.stderr
    assert counts["flows_lost"] == 0 and counts["flows_spooled"] == 0 and add_up(counts)
    assert counts["flows_classified"] + counts["flows_rejected"] == total
    ids = [batch_id for batch_id, _, _ in server.attempts]
    assert all(re.fullmatch(BATCH_ID_PATTERN, batch_id or "") for batch_id in ids)
    assert any("." in batch_id for batch_id in ids)  # parts of a batch split after a 400
    failed = [i for i, (_, _, status) in enumerate(server.attempts) if status == 503]
    assert failed and all(ids[i] in ids[i + 1 :] for i in failed)
    answered = {batch_id: n for batch_id, n, status in server.attempts if status == 200}
    assert sum(answered.values()) == counts["flows_classified"]
    assert lines(tmp_path / "logs" / "flows.jsonl") == counts["flows_classified"]


def test_a_spooled_batch_keeps_its_id_and_an_old_spool_file_gets_one(tmp_path):
    """Batches spooled while the server answers 503 are sent under the same ids by the next
    run; a spool file written before batch ids gets the same id at every read."""
    log_dir = tmp_path / "logs"
    with ClassifyServer(fail=lambda n: True) as down:
        first = agent_run(
            PCAPS / "masscan_tcp_0_1000.pcap", down.url, log_dir, "--drain-timeout", "0"
        )
    assert first.returncode == 0, first.stderr  # spooled, nothing lost
    files = sorted((log_dir / "spool").glob("batch-*.json"), key=lambda p: int(p.stem[6:]))
    spooled = [json.loads(p.read_text())["id"] for p in files]
    assert len(spooled) > 1 and {batch_id for batch_id, _, _ in down.attempts} <= set(spooled)
    files[0].write_text(json.dumps({"flows": json.loads(files[0].read_text())["flows"]}))
    with ClassifyServer(fail=lambda n: n == 1) as busy:  # the oldest file is tried twice
        again = agent_run(PCAPS / "whois.pcap", busy.url, log_dir, "--drain-timeout", "30")
    assert again.returncode == 0, again.stderr
    sent = [batch_id for batch_id, _, _ in busy.attempts]
    assert sent[0] == sent[1] and sent[0] not in spooled
    assert set(spooled[1:]) <= set(sent)


# Case 3: full disks


def test_a_full_log_disk_counts_what_is_not_logged_and_classifies_everything(tmp_path, tmpfs):
    log_dir = tmpfs(tmp_path / "logs")
    with ClassifyServer() as server:
        result = agent_run(PCAPS / "synflood_spoofed.pcap", server.url, log_dir, timeout=300)
    assert "Traceback" not in result.stderr
    counts = summary_counts(result.stderr)
    assert result.returncode == 1
    assert counts["flows_classified"] == counts["connections_emitted"] == len(server.received)
    assert counts["flows_lost"] == 0 and add_up(counts)
    assert counts["packets_not_logged"] > 0
    assert counts["packets_written_pcap"] + counts["packets_not_logged"] == counts["packets_seen"]
    assert packets_in(log_dir / "capture.pcap") == counts["packets_written_pcap"]
    for name, key in (("flows.jsonl", "jsonl"), ("traffic.txt", "txt")):
        not_logged = counts[f"flows_not_logged_{key}"]
        assert lines(log_dir / name) == counts["flows_classified"] - not_logged
        assert result.stderr.count(f"cannot write {name}") == (1 if not_logged else 0)
    assert result.stderr.count("cannot write capture.pcap") == 1
    assert "packets not written to capture.pcap" in result.stderr


def test_a_full_spool_disk_loses_flows_counted_and_ends(tmp_path, tmpfs):
    log_dir = tmp_path / "logs"
    tmpfs(log_dir / "spool")
    result = agent_run(
        PCAPS / "synflood_spoofed.pcap",
        f"http://127.0.0.1:{free_port()}",
        log_dir,
        "--drain-timeout",
        "1",
        timeout=300,
    )
    assert "Traceback" not in result.stderr
    counts = summary_counts(result.stderr)
    assert result.returncode == 1
    assert counts["flows_lost"] > 0 and counts["flows_spooled"] > 0 and add_up(counts)
    assert "flows lost because the spool could not be written" in result.stderr
    assert result.stderr.count("cannot write the spool") == 1
    assert not list((log_dir / "spool").glob(".batch-*.tmp"))


# Case 4: the sender failing, bad token files, corrupt spool files


def test_a_sender_that_cannot_start_ends_the_run_with_everything_counted_lost(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "flows.jsonl").symlink_to(tmp_path / "elsewhere")
    with ClassifyServer() as server:
        result = agent_run(PCAPS / "synflood_spoofed.pcap", server.url, log_dir, timeout=120)
    assert result.returncode == 1 and "symbolic link" in result.stderr
    counts = summary_counts(result.stderr)
    assert counts["flows_lost"] == counts["connections_emitted"] > 0 and add_up(counts)
    assert "the sender process failed" in result.stderr and not server.received


def flood_sent(server: ClassifyServer, log_dir: Path, requests: int, **popen) -> subprocess.Popen:
    """An agent replaying the SYN flood to server, once the server has had `requests` requests
    (or after 60 s)."""
    proc = subprocess.Popen(
        agent_argv(PCAPS / "synflood_spoofed.pcap", server.url, log_dir), **popen
    )
    deadline = time.monotonic() + 60
    while len(server.attempts) < requests and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_a_killed_sender_ends_the_run(tmp_path):
    log_dir = tmp_path / "logs"
    with ClassifyServer() as server:
        # a second request: the first batch's verdicts are in the sender's tally by then
        proc = flood_sent(server, log_dir, 2, stderr=subprocess.PIPE, text=True)
        (sender,) = psutil.Process(proc.pid).children()
        sender.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "the sender process failed: it ended (exit code -9) without reporting" in stderr
    counts = summary_counts(stderr)
    assert 0 < counts["flows_classified"] <= len(server.received) and add_up(counts)
    assert counts["flows_lost"] > 0 and "flows lost because the sender process failed" in stderr


def test_a_server_answering_200_without_verdicts_is_counted_not_fatal(tmp_path):
    with ClassifyServer(garbage=True) as server:
        result = agent_run(PCAPS / "nmap_80_all.pcap", server.url, tmp_path / "logs", timeout=60)
    counts = summary_counts(result.stderr)
    assert result.returncode == 1 and "without verdicts" in result.stderr
    assert counts["flows_rejected"] == counts["connections_emitted"] == len(server.received)
    assert add_up(counts)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        ("t\u00f6ken\n".encode(), "cannot read a token"),
        (b"\x00\xff\xfe\x01", "cannot read a token"),
        (b"abc\ndef\n", "no token has"),
        (b"abc def", "no token has"),
        (b"abc\x01", "no token has"),
    ],
)
def test_a_token_file_that_cannot_hold_a_token_fails_at_start(tmp_path, content, error):
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    with ClassifyServer(token="abc") as server:
        result = agent_run(
            PCAPS / "whois.pcap", server.url, tmp_path / "logs", "--token-file", str(token_file)
        )
    assert result.returncode == 2 and error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not server.attempts


def test_a_good_token_file_with_a_final_newline_is_taken(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_bytes(b"s3cr-et_~.+/=\n")
    with ClassifyServer(token="s3cr-et_~.+/=") as server:
        result = agent_run(
            PCAPS / "whois.pcap", server.url, tmp_path / "logs", "--token-file", str(token_file)
        )
    assert result.returncode == 0, result.stderr


def test_a_non_ascii_token_in_the_environment_fails_at_start(tmp_path):
    with ClassifyServer(token="abc") as server:
        result = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs", token="t\u00f6k")
    assert result.returncode == 2 and "no token has" in result.stderr
    assert not server.attempts


def test_corrupt_spool_files_are_set_aside_and_the_agent_goes_on(tmp_path):
    spool = tmp_path / "logs" / "spool"
    spool.mkdir(parents=True)
    (spool / "batch-1.json").write_bytes(b"")  # what a power loss leaves
    (spool / "batch-2.json").write_bytes(b'{"id": "x", "flows": [{"src_ip": "10.')
    (spool / "batch-3.json").write_bytes(b"\x00\x01 not json")
    (spool / "batch-4.json").write_text('{"id": "bad id!", "flows": []}')
    (spool / ".batch-5.tmp").write_text("a write cut short")
    with ClassifyServer() as server:
        result = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "4 unreadable spool files" in result.stderr
        assert summary_counts(result.stderr)["flows_classified"] == 1
        assert sorted(p.name for p in spool.iterdir()) == [
            f"batch-{n}.json.corrupt" for n in range(1, 5)
        ]
        again = agent_run(PCAPS / "whois.pcap", server.url, tmp_path / "logs")
    assert again.returncode == 0, again.stderr


# Case 5: restarts keep the earlier capture


def flow_options(flow: dict) -> list[str]:
    names = {"src_ip": "--src", "dst_ip": "--dst", "start_time": "--start", "end_time": "--end"}
    names |= {"src_port": "--src-port", "dst_port": "--dst-port"}
    return [arg for key, name in names.items() for arg in (name, str(flow[key]))]


def test_a_second_run_keeps_the_first_runs_capture_and_logs(tmp_path):
    log_dir = tmp_path / "logs"
    with ClassifyServer() as server:
        first = agent_run(PCAPS / "nmap_80_all.pcap", server.url, log_dir)
        size, flows = (log_dir / "capture.pcap").stat().st_size, lines(log_dir / "flows.jsonl")
        second = agent_run(PCAPS / "whois.pcap", server.url, log_dir)
    assert first.returncode == second.returncode == 0, second.stderr
    assert (log_dir / "capture.pcap.1").stat().st_size == size == 117_415
    assert packets_in(log_dir / "capture.pcap") == 11
    assert lines(log_dir / "flows.jsonl") == flows + 1
    assert lines(log_dir / "traffic.txt") == flows + 1
    first_flow = json.loads((log_dir / "flows.jsonl").read_text().splitlines()[0])
    out = tmp_path / "one.pcap"
    done = subprocess.run(
        [
            *AGENT,
            "pcap-slice",
            "--log-dir",
            str(log_dir),
            "-o",
            str(out),
            *flow_options(first_flow),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and packets_in(out) > 0, done.stderr


def test_a_restart_after_a_crash_keeps_the_packets_written_before_it(tmp_path):
    log_dir = tmp_path / "logs"
    with ClassifyServer() as server:
        proc = flood_sent(server, log_dir, 1, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # past a flush of capture.pcap
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        before = packets_in(log_dir / "capture.pcap")
        again = agent_run(PCAPS / "whois.pcap", server.url, log_dir)
    assert again.returncode == 0, again.stderr
    assert before > 0 and packets_in(log_dir / "capture.pcap.1") == before
    assert packets_in(log_dir / "capture.pcap") == 11


# Case 8d: timestamps past what pcap can hold


def pcapng_udp(path: Path, seconds: list[int]) -> Path:
    """A pcapng (microsecond stamps) with one UDP packet, a conversation of its own, per time."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    data = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    data += block(1, struct.pack("<HHI", 1, 0, 262144))
    for n, second in enumerate(seconds):
        frame = bytes(Ether() / IP(src="10.7.0.1", dst="10.7.0.2") / UDP(sport=1000 + n, dport=53))
        ts = second * 1_000_000
        data += block(
            6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
        )
    path.write_bytes(data)
    return path


def test_packets_stamped_past_2_to_the_32_are_classified_and_counted_not_logged(tmp_path):
    seconds = [1_700_000_000 + n for n in range(10)] + [2**32 + n for n in range(40)]
    pcap = pcapng_udp(tmp_path / "far.pcapng", seconds)
    assert extracted_rows(pcap, tmp_path) == 50
    with ClassifyServer() as server:
        result = agent_run(pcap, server.url, tmp_path / "logs")
    counts = summary_counts(result.stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert counts["flows_classified"] == len(server.received) == 50
    assert counts["packets_not_logged"] == 40 and counts["packets_written_pcap"] == 10
    assert result.stderr.count("past what pcap can hold") == 1
    assert packets_in(tmp_path / "logs" / "capture.pcap") == 10
