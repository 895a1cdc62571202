"""`desy-agent extract`: CSV layout, bad files give a clear error."""

import csv
import subprocess
import sys

from desy.schema import FEATURE_NAMES
from tests.conftest import PCAPS

AGENT = [sys.executable, "-m", "capture_agent.cli", "extract"]


def test_csv_header_and_rows(tmp_path):
    out = tmp_path / "flows.csv"
    result = subprocess.run(
        [*AGENT, str(PCAPS / "masscan_tcp_0_1000.pcap"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "packets" in result.stderr and "connections_emitted=" in result.stderr
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == [
        *FEATURE_NAMES,
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "start_time",
        "end_time",
    ]
    assert len(rows) - 1 == 1001
    assert all(len(row) == 47 for row in rows)


def test_not_a_capture_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a pcap file at all" * 10)
    result = subprocess.run(
        [*AGENT, str(junk)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "not a readable pcap/pcapng file" in result.stderr and "Traceback" not in result.stderr


def test_truncated_capture_keeps_what_was_read(tmp_path):
    data = (PCAPS / "nmap_80_all.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])  # ends in the middle of a record
    out = tmp_path / "cut.csv"
    result = subprocess.run(
        [*AGENT, str(cut), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) > 5
