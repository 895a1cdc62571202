"""The production engine gives exactly the oracle's output (today's Python engine, frozen in
tests/agent/oracle): the same CSV text byte for byte and the same counters, on the shared pcaps,
the crafted captures, synthetic streams and random frames, through `desy-agent extract` with one
and through Extractor's feed, feed_block and tick (issue 23)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from benchmarks import crafted
from capture_agent.blocks import Block
from capture_agent.cli import app
from capture_agent.extractor import Extractor, Limits, Timeouts
from capture_agent.extractor import extract_file as production_extract_file
from tests.agent import streams
from tests.agent.oracle.extractor import Extractor as OracleExtractor
from tests.agent.oracle.extractor import extract_file as oracle_extract_file
from tests.agent.oracle.table import Limits as OracleLimits
from tests.agent.oracle.table import Timeouts as OracleTimeouts
from tests.agent.oracle.text import HEADER, csv_lines

SHARED_PCAPS = Path(__file__).parents[2] / ".." / "shared" / "pcaps"
COUNTERS = (
    "packets_seen",
    "packets_parsed",
    "packets_malformed",
    "packets_not_ip",
    "connections_emitted",
    "connections_evicted",
    "payload_bytes_over_budget",
    "packets_time_backwards",
    "malformed_reasons",
)
FIELDS = HEADER.rstrip("\n").split(",")


@dataclass(frozen=True)
class Options:
    """The extract options given to both engines (always all of them, explicitly)."""

    tcp_attempt: float = 5.0
    tcp_established: float = 120.0
    udp: float = 30.0
    connections: int = 262_144
    payload: int = 64 * 1024 * 1024  # no CLI option: Extractor and extract_file only

    def argv(self) -> list[str]:
        return [
            f"--tcp-attempt-timeout={self.tcp_attempt}",
            f"--tcp-idle-timeout={self.tcp_established}",
            f"--udp-timeout={self.udp}",
            f"--max-connections={self.connections}",
        ]

    def engine(self, timeouts: type, limits: type) -> tuple:
        """(Timeouts, Limits) of an engine's own classes."""
        return (
            timeouts(self.tcp_attempt, self.tcp_established, udp=self.udp),
            limits(self.connections, self.payload),
        )


DEFAULT = Options()
SMALL_TABLE = Options(connections=64)
SHORT_TIMEOUTS = Options(tcp_attempt=0.5, tcp_established=2.0, udp=1.0)
TINY_BUDGET = Options(payload=3000)
OPTION_NAMES = {
    DEFAULT: "default",
    SMALL_TABLE: "64-connections",
    SHORT_TIMEOUTS: "short-timeouts",
    TINY_BUDGET: "3000-payload-bytes",
}


# ---- comparing ----------------------------------------------------------------------------


def first_difference(expected: list[str], actual: list[str]) -> str:
    """Where two lists of CSV lines first differ: both lines and the fields that differ."""
    for number, (want, got) in enumerate(zip(expected, actual, strict=False), 1):
        if want != got:
            pairs = zip(FIELDS, want.rstrip("\n").split(","), got.rstrip("\n").split(","))
            fields = [f"{name}: oracle {a!r}, production {b!r}" for name, a, b in pairs if a != b]
            return f"line {number} differs\n oracle:     {want!r}\n production: {got!r}\n " + (
                "\n ".join(fields) or "(different field counts)"
            )
    if len(expected) != len(actual):
        extra = (expected if len(expected) > len(actual) else actual)[
            min(map(len, (expected, actual)))
        ]
        return f"oracle {len(expected)} lines, production {len(actual)}; first extra line {extra!r}"
    return "identical"


def assert_same_lines(expected: list[str], actual: list[str], what: str) -> None:
    assert expected == actual, f"{what}: {first_difference(expected, actual)}"


def counter_values(counters) -> dict:
    """The counters both engines report, by name."""
    values = {name: getattr(counters, name) for name in COUNTERS}
    values["malformed_reasons"] = dict(values["malformed_reasons"])
    return values


def assert_same_counters(expected, actual, what: str) -> None:
    want, got = counter_values(expected), counter_values(actual)
    differ = {name: (want[name], got[name]) for name in COUNTERS if want[name] != got[name]}
    assert not differ, f"{what}: counters differ (oracle, production): {differ}"


# ---- captures -----------------------------------------------------------------------------


def restamped(frames: list[streams.Frame], t0: float, step: float) -> list[streams.Frame]:
    return [(frame, linktype, t0 + i * step) for i, (frame, linktype, _) in enumerate(frames)]


def cut(whole: Path, keep: int, out: Path) -> Path:
    """out holds whole's first keep bytes (negative: all but the last -keep)."""
    out.write_bytes(whole.read_bytes()[:keep])
    return out


#: The second record header of a pcap of streams.content(): after the file header (24 bytes) and
#: the first record (16 + a 54-byte SYN).
SECOND_RECORD = 24 + 16 + 54


def write_capture(name: str, directory: Path) -> Path:
    """Write the named capture into directory."""
    path = directory / name
    stem = name.rsplit(".", 1)[0]
    if stem in streams.STREAMS:
        return streams.write_pcap(path, streams.STREAMS[stem]())
    if stem.startswith("crafted_"):
        return crafted.write_pcap(path, CRAFTED[stem.removeprefix("crafted_")]())
    if stem.startswith("linktype_"):
        return streams.write_pcap(path, streams.link_types()[int(stem.removeprefix("linktype_"))])
    return OTHER_CAPTURES[name](path)


def nanosecond(path: Path) -> Path:
    """Nanosecond stamps, many within one microsecond, near the epoch and today."""
    frames = restamped(streams.content(), 1000.000000123, 1.37e-7)
    frames += restamped(streams.icmp(), streams.T0 + 5, 3.1e-8)
    return streams.write_pcap(path, frames, nano=True)


def content_pcap(path: Path) -> Path:
    return streams.write_pcap(path, streams.content())


def two_interfaces(path: Path) -> Path:
    """Ethernet (nanosecond if_tsresol) and raw IP (microseconds) interleaved in one pcapng."""
    raw = restamped(streams.link_types()[streams.RAW], streams.T0 + 0.0005, 0.003)
    return streams.write_pcapng(path, streams.by_time(streams.lab_like(), raw), {1: 9, 101: 6})


def far_future(path: Path) -> Path:
    """Stamps past 2**32 s, in microseconds and in a binary (2**-20 s) resolution."""
    frames = restamped(streams.content(), 2.0**32 + 5, 1e-3)
    raw = restamped(streams.link_types()[streams.RAW], 2.0**33, 1e-3)
    return streams.write_pcapng(path, frames + raw, {1: 6, 101: 0x80 | 20})


OTHER_CAPTURES: dict[str, Callable[[Path], Path]] = {
    "nanosecond.pcap": nanosecond,
    "big_endian.pcap": lambda p: streams.write_pcap(p, streams.vlans(), big_endian=True),
    "snaplen_64.pcap": lambda p: streams.write_pcap(p, streams.content(), snaplen=64),
    "two_interfaces.pcapng": two_interfaces,
    "far_future.pcapng": far_future,
    "cut_in_data.pcap": lambda p: cut(content_pcap(p.with_suffix(".whole")), -7, p),
    "cut_in_header.pcap": lambda p: cut(
        content_pcap(p.with_suffix(".whole")), SECOND_RECORD + 9, p
    ),
    "cut_in_block.pcapng": lambda p: cut(two_interfaces(p.with_suffix(".whole")), -9, p),
}
CRAFTED: dict[str, Callable[[], list[crafted.Frame]]] = {
    "telnet_root": crafted.telnet_root,
    "telnet_root_ordinary": lambda: crafted.ordinary(*crafted.size(crafted.telnet_root())),
    "fragments": crafted.fragments,
    "mixed": crafted.mixed,
    "http_flood": lambda: crafted.http_flood(connections=200),
}
#: Big captures, marked slow (plain pytest still runs them).
SLOW = {
    "synflood_spoofed.pcap",
    "syn_flood.pcap",
    "long_flows.pcap",
    "crafted_mixed.pcap",
    "crafted_fragments.pcap",
}


def capture_names() -> list[str]:
    shared = sorted(p.name for p in SHARED_PCAPS.glob("*") if p.suffix in (".pcap", ".pcapng"))
    return [
        *(f"shared/{name}" for name in shared),
        *(f"crafted_{name}.pcap" for name in CRAFTED),
        *(f"{name}.pcap" for name in streams.STREAMS),
        *(f"linktype_{linktype}.pcap" for linktype in streams.link_types()),
        *OTHER_CAPTURES,
    ]


VARIANTS = {
    "shared/synflood_spoofed.pcap": [SMALL_TABLE],
    "shared/tcp_two_way_all_flags.pcap": [SHORT_TIMEOUTS],
    "syn_flood.pcap": [SMALL_TABLE],
    "long_flows.pcap": [SHORT_TIMEOUTS],
    "time_backwards.pcap": [SHORT_TIMEOUTS],
    "many_connections.pcap": [SMALL_TABLE, SHORT_TIMEOUTS],
    "lab_like.pcap": [SMALL_TABLE, SHORT_TIMEOUTS],
    "crafted_http_flood.pcap": [SMALL_TABLE],
}


def cases() -> list:
    out = []
    for name in capture_names():
        for options in [DEFAULT, *VARIANTS.get(name, [])]:
            marks = [pytest.mark.slow] if name.removeprefix("shared/") in SLOW else []
            tag = "" if options == DEFAULT else f"-{OPTION_NAMES[options]}"
            out.append(pytest.param(name, options, marks=marks, id=f"{name}{tag}"))
    return out


class Captures:
    """Capture files by name (written on first use) and the oracle's output for each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: dict[str, Path] = {}
        self.oracle: dict[tuple, tuple[list[str], object]] = {}

    def path(self, name: str) -> Path:
        if name.startswith("shared/"):
            return SHARED_PCAPS / name.removeprefix("shared/")
        if name not in self.paths:
            self.paths[name] = write_capture(name, self.directory)
        return self.paths[name]

    def expected(self, name: str, options: Options) -> tuple[list[str], object]:
        """The oracle's CSV lines (header first) and counters."""
        if (name, options) not in self.oracle:
            self.oracle[name, options] = oracle_output(self.path(name), options)
        return self.oracle[name, options]


def oracle_output(path: Path, options: Options = DEFAULT) -> tuple[list[str], object]:
    """The oracle's CSV lines of a capture (header first) and its counters."""
    timeouts, limits = options.engine(OracleTimeouts, OracleLimits)
    lines = [HEADER]
    for rows, progress in oracle_extract_file(path, timeouts, limits, parallel=False):
        lines += csv_lines(rows)
    return lines, progress


def assert_extract_is_the_oracles(
    path: Path, out: Path, options: Options = DEFAULT, expected: tuple | None = None
) -> None:
    """`desy-agent extract path` writes the oracle's CSV, and extract_file counts as it does."""
    lines, counters = expected or oracle_output(path, options)
    argv = ["extract", str(path), "-o", str(out), "-q", *options.argv()]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    actual = out.read_text().splitlines(keepends=True)
    assert_same_lines(lines, actual, f"desy-agent extract {path.name}")
    timeouts, limits = options.engine(Timeouts, Limits)
    *_, (_, production) = production_extract_file(path, timeouts, limits)
    assert_same_counters(counters, production, f"extract_file({path.name})")


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Captures:
    return Captures(tmp_path_factory.mktemp("engine-captures"))


# ---- files through the CLI and extract_file -------------------------------------------------


def test_every_shared_capture_is_compared():
    names = capture_names()
    assert sum(name.startswith("shared/") for name in names) >= 12, SHARED_PCAPS


@pytest.mark.parametrize(("name", "options"), cases())
def test_extract_writes_the_oracles_csv_and_counts(captures, tmp_path, name, options):
    path = captures.path(name)
    expected = captures.expected(name, options)
    assert_extract_is_the_oracles(path, tmp_path / "out.csv", options, expected)


def test_a_tiny_payload_budget_refuses_the_same_bytes(captures):
    """Limits.payload has no CLI option: extract_file itself, on the content-heavy captures."""
    for name in ("content.pcap", "crafted_http_flood.pcap", "crafted_telnet_root.pcap"):
        expected, counters = captures.expected(name, TINY_BUDGET)
        timeouts, limits = TINY_BUDGET.engine(Timeouts, Limits)
        lines, production = [HEADER], None
        for rows, production in production_extract_file(captures.path(name), timeouts, limits):
            lines += csv_lines(rows)
        assert counters.payload_bytes_over_budget > 0
        assert_same_lines(expected, lines, f"extract_file({name}, payload=3000)")
        assert_same_counters(counters, production, f"extract_file({name}, payload=3000)")


# ---- frames through Extractor: feed, tick and feed_block ---------------------------------------


def fed(extractor, frames: list[streams.Frame], tick_every: int) -> list[list[str]]:
    """The CSV lines each call returned: feed per frame, tick every tick_every frames, finish."""
    calls = []
    for i, (frame, linktype, ts) in enumerate(frames, 1):
        calls.append(csv_lines(extractor.feed(frame, linktype, ts)))
        if i % tick_every == 0:
            calls.append(csv_lines(extractor.tick(ts + 0.5)))
    calls.append(csv_lines(extractor.finish()))
    return calls


def fed_in_blocks(extractor, frames: list[streams.Frame], size: int) -> list[list[str]]:
    """The CSV lines of each feed_block call on blocks of size frames, then finish."""
    calls = [
        csv_lines(extractor.feed_block(Block.of(frames[i : i + size])))
        for i in range(0, len(frames), size)
    ]
    return [*calls, csv_lines(extractor.finish())]


def assert_same_calls(expected: list[list[str]], actual: list[list[str]], what: str) -> None:
    """The same rows returned by the same calls (a row emitted a call late is a difference)."""
    assert len(expected) == len(actual), f"{what}: {len(expected)} calls, {len(actual)}"
    for number, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert_same_lines(want, got, f"{what}, call {number}")


def compare_extractors(frames: list[streams.Frame], options: Options, what: str) -> None:
    """Production's Extractor against the oracle's: per frame with ticks, and in blocks."""
    make = (
        lambda: OracleExtractor(*options.engine(OracleTimeouts, OracleLimits)),
        lambda: Extractor(*options.engine(Timeouts, Limits)),
    )
    for tick_every in (7, 1000):
        oracle_x, production_x = make[0](), make[1]()
        calls = fed(oracle_x, frames, tick_every), fed(production_x, frames, tick_every)
        assert_same_calls(*calls, f"{what}: feed, tick every {tick_every}")
        assert_same_counters(oracle_x.counters, production_x.counters, f"{what}: feed")
    for size in (1, 64, 4096):
        oracle_x, production_x = make[0](), make[1]()
        calls = fed_in_blocks(oracle_x, frames, size), fed_in_blocks(production_x, frames, size)
        assert_same_calls(*calls, f"{what}: feed_block of {size}")
        assert_same_counters(oracle_x.counters, production_x.counters, f"{what}: feed_block")


SMALL_STREAMS = [name for name in streams.STREAMS if name not in ("syn_flood", "long_flows")]


@pytest.mark.parametrize("options", list(OPTION_NAMES), ids=OPTION_NAMES.get)
@pytest.mark.parametrize("name", SMALL_STREAMS)
def test_extractor_feed_tick_and_blocks_match_the_oracle(name, options):
    compare_extractors(streams.STREAMS[name](), options, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["syn_flood", "long_flows"])
def test_extractor_on_the_big_streams_matches_the_oracle(name):
    frames = streams.STREAMS[name]()
    compare_extractors(frames, SMALL_TABLE if name == "syn_flood" else SHORT_TIMEOUTS, name)


def test_extractor_on_every_link_type_matches_the_oracle():
    frames = streams.by_time(*streams.link_types().values())
    compare_extractors(frames, DEFAULT, "link types")


# ---- random frame streams -------------------------------------------------------------------


def templates() -> list[streams.Frame]:
    """Valid frames of every kind the synthetic streams hold, to mutate."""
    rng, out = random.Random(11), []
    for name in SMALL_STREAMS:
        frames = streams.STREAMS[name]()
        out += rng.sample(frames, min(25, len(frames)))
    for frames in streams.link_types().values():
        out += frames
    return out


TEMPLATES = templates()
LINKTYPES = (0, 1, 1, 1, 12, 101, 108, 113, 228, 229, 276, 147)


@st.composite
def frame_streams(draw) -> list[streams.Frame]:
    """Up to 60 frames: random bytes or mutated valid frames (bytes flipped, cut, extended, of
    another link type), stamped mostly forward with now and then a step back."""
    out, ts = [], streams.T0
    for _ in range(draw(st.integers(1, 60))):
        ts += draw(st.sampled_from((0.0, 1e-6, 1e-3, 0.3, 2.5, 40.0, -1.0)))
        if draw(st.integers(0, 4)) == 0:
            out.append((draw(st.binary(max_size=120)), draw(st.sampled_from(LINKTYPES)), ts))
            continue
        frame, linktype, _ = draw(st.sampled_from(TEMPLATES))
        data = bytearray(frame)
        for _ in range(draw(st.integers(0, 3))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        if draw(st.integers(0, 5)) == 0:
            data += draw(st.binary(max_size=40))
        if draw(st.integers(0, 7)) == 0:
            linktype = draw(st.sampled_from(LINKTYPES))
        out.append((bytes(data), linktype, ts))
    return out


FUZZ_OPTIONS = st.builds(
    Options,
    tcp_attempt=st.sampled_from((0.0, 0.5, 5.0)),
    tcp_established=st.sampled_from((0.5, 3.0, 120.0)),
    udp=st.sampled_from((0.5, 30.0)),
    connections=st.sampled_from((1, 3, 64, 262_144)),
    payload=st.sampled_from((0, 100, 64 * 1024 * 1024)),
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=frame_streams(), options=FUZZ_OPTIONS)
def test_random_frame_streams_match_the_oracle(frames, options):
    compare_extractors(frames, options, f"random stream of {len(frames)} frames, {options}")
