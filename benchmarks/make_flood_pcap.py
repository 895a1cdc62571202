"""Build a large flow-heavy capture: synflood_spoofed.pcap repeated N times, each copy shifted
in time and with its source addresses rewritten so every copy adds new connections.

    uv run python benchmarks/make_flood_pcap.py ../shared/pcaps/synflood_spoofed.pcap /tmp/flood.pcap --copies 9
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Annotated

import typer
from scapy.utils import RawPcapReader, RawPcapWriter


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def rewrite(frame: bytes, copy: int) -> bytes:
    """Ethernet/IPv4 frame with the source address's second octet changed and the checksum fixed."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    data = bytearray(frame)
    data[27] = (data[27] + copy * 17) & 0xFF
    ihl = (data[14] & 0x0F) * 4
    data[24:26] = b"\0\0"
    data[24:26] = struct.pack("!H", _checksum(bytes(data[14 : 14 + ihl])))
    return bytes(data)


def main(
    source: Annotated[Path, typer.Argument(exists=True)],
    out: Annotated[Path, typer.Argument()],
    copies: Annotated[int, typer.Option(help="How many copies of the source to concatenate.")] = 9,
) -> None:
    records = list(RawPcapReader(str(source)))
    first = records[0][1].sec + records[0][1].usec / 1e6
    last = records[-1][1].sec + records[-1][1].usec / 1e6
    span = last - first + 1.0
    with RawPcapWriter(str(out), linktype=1) as writer:
        writer.write_header(None)
        for copy in range(copies):
            for frame, meta in records:
                ts = meta.sec + meta.usec / 1e6 + copy * span
                sec = int(ts)
                writer.write_packet(
                    rewrite(frame, copy),
                    sec=sec,
                    usec=int((ts - sec) * 1e6),
                    caplen=len(frame),
                    wirelen=meta.wirelen,
                )
    typer.echo(f"{out}: {copies * len(records):,} packets", err=True)


if __name__ == "__main__":
    typer.run(main)
