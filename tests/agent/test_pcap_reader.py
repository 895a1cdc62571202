"""The lean pcap/pcapng reader against scapy's raw readers, the oracle: the same frames, link
types and timestamps (bit for bit), and the same end, on real, synthetic, cut and damaged files."""

from __future__ import annotations

import gzip
import io
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from capture_agent.pcap import CaptureFileError, blocks, frames
from tests.conftest import PCAPS

Frame = tuple[bytes, int, float | None]


def scapy_read(data: bytes) -> tuple[list[Frame], bool]:
    """The frames scapy's raw readers give for a file's bytes, and whether they raised."""
    found: list[Frame] = []
    try:
        reader = RawPcapReader(io.BytesIO(data))
        for frame, meta in reader:
            if not isinstance(reader, RawPcapNgReader):
                scale = 1e-9 if reader.nano else 1e-6
                found.append((frame, reader.linktype, meta.sec + meta.usec * scale))
            elif meta.tshigh is None:  # a Simple Packet Block has no time
                found.append((frame, meta.linktype, None))
            else:
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                found.append((frame, meta.linktype, ts))
    except Scapy_Exception:
        return found, True
    return found, False


def lean_read(path: Path, per_block: int = 3) -> tuple[list[Frame], bool]:
    """The frames blocks() gives, and whether it raised CaptureFileError."""
    found: list[Frame] = []
    try:
        for block in blocks(path, per_block):
            assert 0 < len(block) <= per_block
            found.extend(block.frames())
    except CaptureFileError:
        return found, True
    return found, False


def exact(read: tuple[list[Frame], bool]) -> tuple[list[tuple], bool]:
    """Timestamps as their bits, so that equal means bit for bit."""
    found, raised = read
    return [(f, lt, None if ts is None else struct.pack("<d", ts)) for f, lt, ts in found], raised


def same_as_scapy(path: Path, per_block: int = 3) -> list[Frame]:
    expected = scapy_read(path.read_bytes())
    assert exact(lean_read(path, per_block)) == exact(expected)
    return expected[0]


def pcap(
    records: list[tuple[int, int, bytes]], magic: str = "d4c3b2a1", linktype: int = 1
) -> bytes:
    """A pcap file of (seconds, fraction, frame) records in the magic's byte order."""
    endian = "<" if magic.startswith(("d4", "4d")) else ">"
    out = bytes.fromhex(magic) + struct.pack(endian + "HHiIII", 2, 4, 0, 0, 65535, linktype)
    for sec, frac, frame in records:
        out += struct.pack(endian + "4I", sec, frac, len(frame), len(frame)) + frame
    return out


def block(endian: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return (
        struct.pack(endian + "2I", kind, len(body) + 12)
        + body
        + struct.pack(endian + "I", len(body) + 12)
    )


def option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "2H", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(endian: str) -> bytes:
    return block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(endian: str, linktype: int, tsresol: int | None = None, snaplen: int = 0) -> bytes:
    options = (
        b"" if tsresol is None else option(endian, 9, bytes([tsresol])) + option(endian, 0, b"")
    )
    return block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options)


def epb(endian: str, intid: int, units: int, frame: bytes, options: bytes = b"") -> bytes:
    head = struct.pack(
        endian + "5I", intid, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(endian, 6, head + frame + b"\0" * (-len(frame) % 4) + options)


def spb(endian: str, frame: bytes) -> bytes:
    return block(endian, 3, struct.pack(endian + "I", len(frame)) + frame)


def pkt(endian: str, intid: int, units: int, frame: bytes) -> bytes:
    head = struct.pack(
        endian + "HH4I", intid, 0, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(endian, 2, head + frame)


T = 1_700_000_123


def frame(i: int) -> bytes:
    return bytes(range(i % 7, i % 7 + 14 + i % 5)) + bytes([i]) * (i % 3)


def interfaces_file(simple: bool = True) -> bytes:
    """Two sections (little then big endian), interfaces of three link types and time units
    (default microseconds, 10^-9, 2^-10), EPBs, an obsolete packet block, an unknown block, EPB
    options, a packet on an interface that does not exist and, if simple, Simple Packet Blocks."""
    le, be = "<", ">"
    flags = option(le, 2, struct.pack("<I", 1)) + option(le, 1, b"a comment") + option(le, 0, b"")
    parts = [
        shb(le),
        idb(le, 1, snaplen=16),
        idb(le, 101, tsresol=9),
        epb(le, 0, T * 10**6 + 123_456, frame(1)),
        epb(le, 1, T * 10**9 + 987_654_321, frame(2), flags),
        block(le, 0x0BAD, b"unknown kind"),
        spb(le, frame(3) * 3),  # cut to interface 0's snaplen
        pkt(le, 1, T * 10**9 + 5, frame(4)),
        epb(le, 7, T, frame(5)),  # no interface 7: skipped
        shb(be),
        idb(be, 113, tsresol=0x8A),
        epb(be, 2, T * 1024 + 1023, frame(6)),
        epb(be, 0, (1 << 52) + 3, frame(7)),
        spb(be, frame(8)),
    ]
    simples = (spb(le, frame(3) * 3), spb(be, frame(8)))
    return b"".join(part for part in parts if simple or part not in simples)


@pytest.mark.parametrize("path", sorted(PCAPS.glob("*.pcap*")), ids=lambda p: p.name)
def test_every_shared_capture_reads_as_with_scapy(path):
    assert same_as_scapy(path, per_block=4096)
    assert list(frames(path)) == [f for b in blocks(path, 7) for f in b.frames()]


@pytest.mark.parametrize("magic", ["a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1"])
def test_pcap_of_either_byte_order_and_precision(tmp_path, magic):
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap([(T + i, 999_999_999 - i, frame(i)) for i in range(10)], magic, 101))
    found = same_as_scapy(path)
    assert len(found) == 10 and {lt for _, lt, _ in found} == {101}


def test_pcapng_interfaces_sections_and_time_units(tmp_path):
    path = tmp_path / "x.pcapng"
    path.write_bytes(interfaces_file())
    found, raised = lean_read(path)
    expected, scapy_raised = scapy_read(path.read_bytes())
    assert not raised and not scapy_raised
    assert [(f, lt) for f, lt, _ in found] == [(f, lt) for f, lt, _ in expected]
    for (_, _, ts), (_, _, want) in zip(found, expected, strict=True):
        assert want is None or struct.pack("<d", ts) == struct.pack("<d", want)
    assert [lt for _, lt, _ in found] == [1, 101, 1, 101, 113, 1, 1]
    assert found[2][0] == (frame(3) * 3)[:16]
    stamps = [ts for _, _, ts in found]
    assert stamps[1] == (T * 10**9 + 987_654_321) / 10**9 and stamps[4] == (T * 1024 + 1023) / 1024
    assert stamps[2] == stamps[1] and stamps[6] == stamps[5]  # an SPB takes the previous time


def small_files() -> list[bytes]:
    records = [(T, i, frame(i)) for i in range(4)]
    return [pcap(records), pcap(records, "a1b23c4d"), interfaces_file(simple=False)]


@pytest.mark.parametrize("index", range(3))
def test_gzipped_capture(tmp_path, index):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(small_files()[index]))
    assert same_as_scapy(path)
    path.write_bytes(gzip.compress(small_files()[index])[:-30])  # cut short: read as far as it goes
    assert exact(lean_read(path)) == exact(scapy_read(path.read_bytes()))


def wide_linktype(data: bytes) -> bool:
    """Whether data is a pcap whose link type field has more than 16 bits (refused, not read)."""
    little, big = ("d4c3b2a1", "4d3cb2a1"), ("a1b2c3d4", "a1b23c4d")
    endian = "<" if data[:4].hex() in little else ">" if data[:4].hex() in big else None
    return (
        endian is not None
        and len(data) >= 24
        and struct.unpack_from(endian + "I", data, 20)[0] > 0xFFFF
    )


@pytest.mark.parametrize("index", range(3))
def test_cut_at_every_byte_ends_as_with_scapy(tmp_path, index):
    data, path = small_files()[index], tmp_path / "cut"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        assert exact(lean_read(path)) == exact(scapy_read(data[:cut])), cut


@pytest.mark.parametrize("index", range(3))
def test_damaged_bytes_end_as_with_scapy(tmp_path, index):
    rng, path = random.Random(index), tmp_path / "damaged"
    data = small_files()[index]
    for _ in range(400):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(data))] = rng.choice([0, 1, 4, 0xFF, rng.randrange(256)])
        path.write_bytes(damaged)
        if wide_linktype(bytes(damaged)):
            assert lean_read(path) == ([], True)
            continue
        assert exact(lean_read(path)) == exact(scapy_read(bytes(damaged))), damaged.hex()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xd4\xc3",
        b"\xd4\xc3\xb2\xa1" + b"\0" * 10,
        b"\x0a\x0d\x0d\x0a\0\0\0\0",
        b"GIF89a" * 9,
        b"\x1f\x8bxx",
    ],
)
def test_not_a_capture(tmp_path, data):
    path = tmp_path / "x"
    path.write_bytes(data)
    assert lean_read(path) == ([], True)
    with pytest.raises(CaptureFileError, match="not a readable pcap/pcapng file"):
        list(frames(path))


def test_missing_file(tmp_path):
    with pytest.raises(CaptureFileError, match="No such file"):
        list(blocks(tmp_path / "nothing.pcap"))


def test_huge_length_fields_allocate_nothing_large(tmp_path):
    """A 4 GB pcap caplen and 4 GB pcapng block lengths: the pcap frame is cut to 65535 bytes and
    the rest skipped, as scapy does; the pcapng capture ends (cut short) or is refused (whole)."""
    path, le = tmp_path / "x", "<"
    huge_record = pcap([(T, 0, frame(0))]) + struct.pack("<4I", T, 1, 0xFFFFFFF0, 9) + b"z" * 70_000
    head = shb(le) + idb(le, 1) + epb(le, 0, T, frame(1))
    big_kind = struct.pack("<2I", 6, 0xFFFFFFF0) + b"\0" * 5000
    whole = (
        head
        + struct.pack("<2I", 6, 5 << 20)
        + b"\0" * ((5 << 20) - 12)
        + struct.pack("<I", 5 << 20)
    )
    unknown = (
        whole.replace(struct.pack("<2I", 6, 5 << 20), struct.pack("<2I", 99, 5 << 20))
    ) + epb(le, 0, T, frame(1))
    tracemalloc.start()
    try:
        for data, want in [
            (huge_record, ([(frame(0), 1), (b"z" * 65535, 1)], False)),
            (head + big_kind, ([(frame(1), 1)], False)),
            (whole, ([(frame(1), 1)], True)),
            (unknown, ([(frame(1), 1), (frame(1), 1)], False)),
        ]:
            path.write_bytes(data)
            found, raised = lean_read(path, 4096)
            assert ([(f, lt) for f, lt, _ in found], raised) == want
            assert tracemalloc.get_traced_memory()[1] < len(data) + (12 << 20)
            tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()


def test_blocks_are_views_of_one_copy(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap([(T, i, frame(i)) for i in range(10)]))
    parts = list(blocks(path, 4))
    assert [len(b) for b in parts] == [4, 4, 2]
    assert all(
        b.data[b.offsets[i] : b.offsets[i] + b.lengths[i]] == frame(4 * n + i)
        for n, b in enumerate(parts)
        for i in range(len(b))
    )
    with pytest.raises(ValueError, match="at least 1"):
        next(blocks(path, 0))
