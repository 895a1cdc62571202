"""Reading pcap and pcapng files (gzipped or not) into blocks of frames, without scapy.

The file is read in large chunks into one buffer and its records are walked with struct; a block's
data is one copy of the buffer span holding its frames (record headers included, skipped by the
offsets). What comes out is what scapy's RawPcapReader/RawPcapNgReader give, frame for frame and
bit for bit: frames cut to MAX_FRAME bytes, a truncated last pcap record kept as far as it goes,
a damaged pcapng block ending the capture, interfaces numbered across sections. Two cases differ:
a pcapng block over MAX_BLOCK bytes of a kind that matters, and a pcap link type over 16 bits, are
a CaptureFileError; a Simple Packet Block, which has no time, takes the previous frame's.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from capture_agent._engine import pcap_records
from capture_agent.blocks import Block

CHUNK = 4 << 20  # bytes read at a time
MAX_FRAME = 0xFFFF  # bytes kept of a frame, as scapy's readers keep (scapy.data.MTU)
MAX_BLOCK = CHUNK  # the largest pcapng block read (a frame is at most 262144 bytes)
GZIP = b"\x1f\x8b"
PCAPNG = b"\x0a\x0d\x0d\x0a"
PCAP = {  # magic: (byte order, seconds per unit of the fraction field)
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
}
SHB, IDB, PKT, SPB, EPB, DSB, PIB = 0x0A0D0D0A, 1, 2, 3, 6, 10, 0x80000001
BYTE_ORDERS = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
DEFAULT_TSRESOL = 1_000_000
FULL, MORE, SECTION, BIG, END = range(5)  # why a walk of the buffer stopped


class CaptureFileError(ValueError):
    """A file that is not a readable pcap or pcapng capture."""


class _End(Exception):
    """The capture ends here (a truncated or damaged record, as scapy's readers stop)."""


def frames(path: Path) -> Iterator[tuple[bytes, int, float]]:
    """Yield (frame bytes, link type, timestamp) for every record of a pcap/pcapng file."""
    for block in blocks(path):
        yield from block.frames()


def blocks(path: Path, frames_per_block: int = 4096) -> Iterator[Block]:
    """Yield the frames of a pcap/pcapng file in blocks of at most frames_per_block frames."""
    if frames_per_block < 1:
        raise ValueError("frames_per_block must be at least 1")
    source = _Source.open(path)
    try:
        yield from _walk(source, path, frames_per_block)
    finally:
        source.close()


def _walk(source: _Source, path: Path, per_block: int) -> Iterator[Block]:
    """The blocks of the file, whichever format its magic names."""
    source.fill(24)
    magic = bytes(source.view[:4])
    if magic in PCAP:
        yield from _pcap(source, path, magic, per_block)
    elif magic == PCAPNG:
        capture = _PcapNg(source, path)
        try:
            capture.section()
        except _End:
            raise _error(path, "malformed section header block") from None
        yield from capture.walk(per_block)
    else:
        raise _error(path, f"bad magic {magic!r}" if magic else "empty")


def _error(path: Path, reason: str) -> CaptureFileError:
    return CaptureFileError(f"{path}: not a readable pcap/pcapng file ({reason})")


class _Source:
    """A capture file read in large chunks into one buffer, walked by position."""

    def __init__(self, file: BinaryIO, raw: BinaryIO) -> None:
        self.file, self.raw = file, raw
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.pos = self.end = 0
        self.eof = self.broken = False  # broken: a gzip stream that ends mid-way
        self.readinto = getattr(file, "readinto1", file.readinto)  # gzip: what is decompressed

    @classmethod
    def open(cls, path: Path) -> _Source:
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
            gzipped = raw.read(2) == GZIP
            raw.seek(0)
        except OSError as err:
            raise _error(path, str(err)) from None
        return cls(gzip.GzipFile(fileobj=raw) if gzipped else raw, raw)

    def close(self) -> None:
        self.file.close()
        self.raw.close()

    def fill(self, need: int) -> bool:
        """Make need bytes readable from pos when the file still has them; whether they are."""
        if self.end - self.pos >= need:
            return True
        if self.pos + need > CHUNK:
            rest = self.end - self.pos
            self.buf[:rest] = self.buf[self.pos : self.end]
            self.pos, self.end = 0, rest
        while self.end - self.pos < need and not self.eof:
            self._read()
        return self.end - self.pos >= need

    def _read(self) -> None:
        try:
            count = self.readinto(self.view[self.end :])
        except (OSError, EOFError, zlib.error):  # a broken gzip stream ends it, as in scapy
            count, self.broken = 0, True
        self.eof = not count
        self.end += count or 0

    def advance(self, pos: int) -> None:
        """Move to pos, which may lie past the bytes read so far."""
        if pos <= self.end:
            self.pos = pos
            return
        try:
            self.file.seek(pos - self.end, 1)
        except (OSError, EOFError, zlib.error):
            self.eof = True
        self.pos = self.end = 0


class _Batch:
    """Frames found in the buffer since start, to become one Block."""

    __slots__ = ("lengths", "linktypes", "offsets", "start", "stop", "ts")

    def __init__(self, start: int) -> None:
        self.start = self.stop = start
        self.offsets, self.lengths = array("Q"), array("I")
        self.linktypes, self.ts = array("H"), array("d")

    def block(self, view: memoryview) -> Block:
        data = bytes(view[self.start : self.stop])
        return Block(data, self.offsets, self.lengths, self.linktypes, self.ts)


def _pcap(source: _Source, path: Path, magic: bytes, per_block: int) -> Iterator[Block]:
    """The blocks of a pcap file: a 24-byte header, then records of a 16-byte header and data."""
    if not source.fill(24):
        raise _error(path, "too short")
    endian, scale = PCAP[magic]
    (linktype,) = struct.unpack_from(endian + "I", source.view, 20)
    if linktype > 0xFFFF:
        raise _error(path, f"link type {linktype:#x} is not a 16-bit link type")
    source.advance(24)
    need = 16
    while source.fill(need) or (source.end - source.pos >= 16 and not source.broken):
        batch = _Batch(source.pos)
        offsets, lengths, stamps, pos, batch.stop, need = pcap_records(
            source.view,
            source.pos,
            source.end,
            batch.start,
            per_block,
            endian == ">",
            scale,
            MAX_FRAME,
            source.eof and not source.broken,  # a cut last record is kept as far as it goes
        )
        if offsets:
            batch.offsets.frombytes(offsets)
            batch.lengths.frombytes(lengths)
            batch.ts.frombytes(stamps)
            batch.linktypes = array("H", [linktype]) * len(batch.offsets)
            yield batch.block(source.view)
        source.advance(pos)


class _PcapNg:
    """A walk of a pcapng file: the byte order of the section, the interfaces described so far
    (numbered across sections, as scapy numbers them)."""

    def __init__(self, source: _Source, path: Path) -> None:
        self.source, self.path = source, path
        self.interfaces: list[tuple[int, int, int]] = []  # link type, snaplen, units per second
        self.last_ts = 0.0
        self.need = 0
        self.big = (0, 0)  # kind and length of a block over MAX_BLOCK
        self.handlers: dict[int, Callable[[memoryview, int, int], tuple | None]] = {
            IDB: self._idb,
            PKT: self._pkt,
            SPB: self._spb,
            DSB: self._dsb,
            PIB: self._pib,
        }
        self._order("<")

    def _order(self, endian: str) -> None:
        self.endian = endian
        self.pair = struct.Struct(endian + "2I").unpack_from
        self.word = struct.Struct(endian + "I").unpack_from
        self.halves = struct.Struct(endian + "2H").unpack_from
        self.epb = struct.Struct(endian + "5I").unpack_from

    def section(self) -> None:
        """Read the Section Header Block at pos; its byte order holds from here."""
        source = self.source
        source.fill(24)
        view, pos, available = source.view, source.pos, source.end - source.pos
        if available < 12 or bytes(view[pos + 8 : pos + 12]) not in BYTE_ORDERS:
            raise _End
        self._order(BYTE_ORDERS[bytes(view[pos + 8 : pos + 12])])
        (length,) = self.word(view, pos + 4)
        if length < 28 or available < 24 or self.halves(view, pos + 12)[0] != 1:
            raise _End
        total = length + (-length & 3)
        if total > MAX_BLOCK:
            raise _error(self.path, f"section header block of {length} bytes: too large")
        source.fill(total)
        pos, available = source.pos, source.end - source.pos
        if available < length - 4:
            raise _error(self.path, "section header block cut short in its options")
        if available < total or self.word(view, pos + total - 4)[0] != length:
            raise _End
        source.advance(pos + total)

    def walk(self, per_block: int) -> Iterator[Block]:
        """The blocks of frames from pos to the end of the capture."""
        source = self.source
        while True:
            batch = _Batch(source.pos)
            reason = self._run(batch, per_block)
            if batch.offsets:
                self.last_ts = batch.ts[-1]
                yield batch.block(source.view)
            if reason == END or (reason == MORE and not source.fill(self.need)):
                return
            if reason == SECTION:
                try:
                    self.section()
                except _End:
                    return
            elif reason == BIG and not self._big():
                return

    def _run(self, batch: _Batch, per_block: int) -> int:
        """Add to batch the frames of the blocks wholly in the buffer; why it stopped."""
        source, pair, word, epb = self.source, self.pair, self.word, self.epb
        view, pos, end = source.view, source.pos, source.end
        interfaces, handlers, last = self.interfaces, self.handlers, self.last_ts
        offsets, lengths, linktypes, stamps = (
            batch.offsets,
            batch.lengths,
            batch.linktypes,
            batch.ts,
        )
        start, reason = batch.start, FULL
        try:
            while len(offsets) < per_block:
                if end - pos < 8:
                    reason, self.need = MORE, 8
                    break
                kind, length = pair(view, pos)
                total = length + (-length & 3)
                if kind == SHB or length < 12 or total > end - pos:
                    reason, self.need = (
                        (SECTION if kind == SHB else END if length < 12 else MORE),
                        total,
                    )
                    break
                if word(view, pos + total - 4)[0] != length:
                    reason = END
                    break
                body, size = pos + 8, length - 12
                if kind == EPB:
                    if size < 20:
                        raise _End
                    intid, high, low, caplen, _ = epb(view, body)
                    options = body + 20 + caplen + (-caplen & 3)
                    if body + size - options >= 4:
                        self._check_epb_options(view, options, body + size)
                    frame = None
                    if intid < len(interfaces):
                        linktype, _, tsresol = interfaces[intid]
                        size = min(caplen, size - 20, MAX_FRAME)
                        frame = body + 20, size, linktype, ((high << 32) | low) / tsresol
                else:
                    handler = handlers.get(kind)
                    frame = handler(view, body, size) if handler else None
                if frame is not None:
                    offsets.append(frame[0] - start)
                    lengths.append(frame[1])
                    linktypes.append(frame[2])
                    last = last if frame[3] is None else frame[3]
                    stamps.append(last)
                    batch.stop = frame[0] + frame[1]
                pos += total
        except _End:
            reason = END
        if reason == MORE and self.need > MAX_BLOCK:
            reason, self.big = BIG, self.pair(view, pos)
        source.advance(pos)
        return reason

    def _big(self) -> bool:
        """Skip the block at pos, larger than MAX_BLOCK, if it is whole and of a kind not read;
        whether the walk goes on (a block cut short or damaged ends it, as in scapy)."""
        source, (kind, length) = self.source, self.big
        source.advance(source.pos + self.need - 4)
        if not source.fill(4) or self.word(source.view, source.pos)[0] != length:
            return False
        if kind == EPB or kind in self.handlers:
            raise _error(self.path, f"pcapng block of kind {kind:#x} and {length} bytes: too large")
        source.advance(source.pos + 4)
        return True

    def _options(self, view: memoryview, pos: int, stop: int) -> dict[int, tuple[int, int]]:
        """(offset, length) of the options from pos to stop, the last of each code (as scapy
        keeps them for the codes read here)."""
        found = {}
        while stop - pos >= 4:
            code, length = self.halves(view, pos)
            if code == 0:
                break
            if pos + 4 + length <= stop:
                found[code] = pos + 4, length
            pos += 4 + length + (-length & 3)
        return found

    def _check_epb_options(self, view: memoryview, pos: int, stop: int) -> None:
        """End the capture where scapy does: a process index or flags option of a bad size."""
        options = self._options(view, pos, stop)
        for code in (0x8001, 0x8003):
            if code in options and options[code][1] != 4:
                raise _End
        if 2 in options and options[2][1] not in (0, 4):
            raise _End

    def _idb(self, view: memoryview, body: int, size: int) -> None:
        """Interface Description Block: link type, snaplen, if_tsresol (option 9)."""
        if size < 8:
            raise _End
        linktype, _, snaplen = struct.unpack_from(self.endian + "HHI", view, body)
        tsresol = DEFAULT_TSRESOL
        option = self._options(view, body + 8, body + size).get(9)
        if option is not None and option[1] == 1:
            code = view[option[0]]
            tsresol = (2 if code & 128 else 10) ** (code & 127)
        self.interfaces.append((linktype, snaplen, tsresol))

    def _pkt(self, view: memoryview, body: int, size: int) -> tuple | None:
        """(Obsolete) Packet Block: a 16-bit interface number, then as an EPB."""
        if size < 20:
            raise _End
        intid, _, high, low, caplen, _ = struct.unpack_from(self.endian + "HH4I", view, body)
        if intid >= len(self.interfaces):
            return None
        linktype, _, tsresol = self.interfaces[intid]
        ts = ((high << 32) | low) / tsresol
        return body + 20, min(caplen, size - 20, MAX_FRAME), linktype, ts

    def _spb(self, view: memoryview, body: int, size: int) -> tuple | None:
        """Simple Packet Block: on the first interface, up to its snaplen, with no time."""
        if not self.interfaces:
            return None
        if size < 4:
            raise _End
        (wirelen,) = self.word(view, body)
        linktype, snaplen, _ = self.interfaces[0]
        return body + 4, min(wirelen, snaplen, size - 4, MAX_FRAME), linktype, None

    def _dsb(self, view: memoryview, body: int, size: int) -> None:
        """Decryption Secrets Block: only checked (its secrets must fit)."""
        if size < 8:
            raise _End
        length = self.pair(view, body)[1]
        if length + (-length & 3) > size - 8:
            raise _End

    def _pib(self, view: memoryview, body: int, size: int) -> None:
        """Process Information Block: only checked (a process id must be there)."""
        if size < 4:
            raise _End
