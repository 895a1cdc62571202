"""Crafted traffic must not blind the agent: bounded work per packet, bounded payload held.

The timeouts are hang guards far above the expected time (each case took 25–70 s before the
fix and well under a second after); speeds are measured in benchmarks/adversarial.py.
"""

from __future__ import annotations

import random
import re
import struct

import pytest

from benchmarks import crafted
from capture_agent.content import _command_lines, content_features
from capture_agent.extractor import CONTENT_CAP, MAX_SPANS, Extractor, Limits
from tests.agent.helpers import records


def run(
    frames: list[crafted.Frame], extractor: Extractor | None = None
) -> tuple[list[dict], Extractor]:
    extractor = extractor or Extractor()
    rows = []
    for t, frame in frames:
        rows += extractor.feed(frame, 1, t)
    return records(rows + extractor.finish()), extractor


@pytest.mark.timeout(30)
def test_a_root_shell_then_a_long_line_is_linear():
    flows, _ = run(crafted.telnet_root())
    assert len(flows) == 10
    assert all(
        f["service"] == "telnet" and f["root_shell"] == 1 and f["num_root"] == 0 for f in flows
    )
    assert all(f["src_bytes"] == 32 * 1024 for f in flows)


def test_command_lines_count_what_the_old_regex_counted():
    regex = re.compile(rb"[^\r\n]+\r?\n")
    rng = random.Random(5)
    for _ in range(20_000):
        data = bytes(rng.choice(b"a\r\n ") for _ in range(rng.randint(0, 12)))
        assert _command_lines(data) == len(regex.findall(data)), data


@pytest.mark.timeout(10)
@pytest.mark.parametrize("unit", [b"echo ", b"\n", b"\n ", b"; ", b"a", b"+OK "])
def test_content_rules_are_linear(unit):
    data = (unit * (CONTENT_CAP // len(unit) + 1))[:CONTENT_CAP]
    for dialect in ("telnet", "ftp", "pop", "imap", "http"):
        content_features(dialect, data, b"root@host:~# " + data, True)


@pytest.mark.timeout(30)
def test_one_byte_segments_are_counted_and_capped():
    flows, extractor = run(crafted.one_byte(100_000))
    assert [f["src_bytes"] for f in flows] == [100_000]
    assert extractor.engine.state()["payload_held"] == 0  # given back when the connection ended


@pytest.mark.timeout(30)
def test_overlapping_fragments_keep_bounded_state():
    extractor = Extractor()
    frames = crafted.fragments(40_000)
    rows = []
    for t, frame in frames[:-1]:
        rows += extractor.feed(frame, 1, t)
    state = extractor.engine.state()
    assert state["datagrams"] == 1 and state["most_spans"] <= MAX_SPANS
    flows = records(rows + extractor.feed(frames[-1][1], 1, frames[-1][0]) + extractor.finish())
    assert len(flows) == 1 and flows[0]["wrong_fragment"] > 0


def test_payload_held_stays_within_the_budget_and_the_rest_is_counted():
    extractor = Extractor(limits=Limits(payload=1024 * 1024))
    flows, _ = run(crafted.http_flood(connections=100), extractor)
    assert len(flows) == 100 and all(f["src_bytes"] == f["dst_bytes"] > 30_000 for f in flows)
    refused = 100 * 2 * (32 * 1024 // 1400) * 1400 - 1024 * 1024
    assert extractor.counters.payload_bytes_over_budget == refused
    assert extractor.engine.state()["payload_held"] == 0


def test_a_timestamp_going_backwards_is_clamped_and_counted():
    frames = crafted.session(
        0.0,
        0x0A000001,
        0x0A000002,
        40000,
        80,
        [b"GET / HTTP/1.0\r\n\r\n"],
        [b"HTTP/1.0 200 OK\r\n"],
    )
    t, frame = frames[4]
    frames[4] = (t - 10.0, frame)  # a clock step back of 10 s in the middle of the connection
    flows, extractor = run(frames)
    assert [f["duration"] for f in flows] == [0]
    assert extractor.counters.packets_time_backwards == 1


def test_later_fragments_do_not_pin_the_table():
    """A SYN sent as a first fragment, then later fragments of it every 2 s: the connection stays
    fresh, and must not stop the idle attempts behind it from timing out (before, it stayed at the
    head of its list and the sweep stopped there: nothing behind it ever expired)."""
    syn = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 2, 65535, 0, 0) + b"x" * 8
    frames = [(crafted.T0, crafted._ip(1, 2, 6, syn, ident=77, frag=0x2000))]
    frames += [crafted.tcp(0.5 + i * 0.01, 3, 2, 30000 + i, 80, 1, 2) for i in range(50)]
    frames += [
        (crafted.T0 + t, crafted._ip(1, 2, 6, b"y" * 8, ident=77, frag=0x2000 | 2))
        for t in range(2, 40, 2)
    ]
    extractor, expired = Extractor(), []
    for t, frame in frames:
        expired += extractor.feed(frame, 1, t)
    assert len(records(expired)) == 50  # the 50 idle attempts, emitted while the capture went on
    assert all(f["flag"] == "S0" and f["src_port"] >= 30000 for f in records(expired))
