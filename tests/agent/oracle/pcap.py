"""Reading frames from pcap and pcapng files with scapy's raw readers (no dissection)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader


class CaptureFileError(ValueError):
    """A file that is not a readable pcap or pcapng capture."""


def frames(path: Path) -> Iterator[tuple[bytes, int, float]]:
    """Yield (frame bytes, link type, timestamp) for every record of a pcap/pcapng file."""
    try:
        reader = RawPcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError) as err:
        raise CaptureFileError(f"{path}: not a readable pcap/pcapng file ({err})") from None
    with reader:
        if isinstance(reader, RawPcapNgReader):
            for data, meta in reader:
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                yield data, meta.linktype, ts
        else:
            linktype = reader.linktype
            nano = getattr(reader, "nano", False)
            scale = 1e-9 if nano else 1e-6
            for data, meta in reader:
                yield data, linktype, meta.sec + meta.usec * scale
