"""Crafted captures that once blinded the agent, and ordinary traffic of the same size.

Frames are built with struct (scapy is too slow for 100k packets) and written as a pcap:

- `telnet_root`: telnet sessions whose server shows a root prompt and whose client then sends
  32 KiB without a newline (a regex that rescanned the line from every offset: 67 s of CPU);
- `one_byte`: one HTTP connection of 100,000 one-byte segments (the kept payload was summed on
  every packet: 45 s);
- `fragments`: 40,000 overlapping fragments of one datagram (every earlier fragment was
  rescanned: 25.5 s);
- `http_flood`: thousands of HTTP connections open at once, 32 KiB each way (458 MB held);
- `ordinary`: HTTP request/response connections with lines of text, the reference for speed.

    uv run python benchmarks/crafted.py /tmp/crafted   # writes every capture there
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

T0 = 1_700_000_000.0
MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
TEXT = b"GET /index.html HTTP/1.1\r\nHost: intranet\r\nAccept: */*\r\n\r\n"
Frame = tuple[float, bytes]


def _ip(src: int, dst: int, proto: int, payload: bytes, ident: int = 1, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident,
        frag,
        64,
        proto,
        0,
        struct.pack("!I", src),
        struct.pack("!I", dst),
    )
    return MAC + header + payload


def tcp(
    t: float, src: int, dst: int, sport: int, dport: int, seq: int, flags: int, payload: bytes = b""
) -> Frame:
    """An Ethernet/IPv4/TCP frame (flags: FIN 1, SYN 2, RST 4, PSH 8, ACK 16)."""
    segment = (
        struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0)
        + payload
    )
    return T0 + t, _ip(src, dst, 6, segment)


def session(
    t: float,
    client: int,
    server: int,
    sport: int,
    dport: int,
    sent: list[bytes],
    answered: list[bytes],
    close: bool = True,
) -> list[Frame]:
    """A TCP connection: handshake, the server's segments, then the client's, then FINs."""
    out = [
        tcp(t, client, server, sport, dport, 100, 2),
        tcp(t + 1e-4, server, client, dport, sport, 900, 18),
        tcp(t + 2e-4, client, server, sport, dport, 101, 16),
    ]
    seq_c, seq_s, step, t = 101, 901, 1e-5, t + 3e-4
    for data in answered:
        t += step
        out.append(tcp(t, server, client, dport, sport, seq_s, 24, data))
        seq_s += len(data)
    for data in sent:
        t += step
        out.append(tcp(t, client, server, sport, dport, seq_c, 24, data))
        seq_c += len(data)
    if close:
        out += [
            tcp(t + step, client, server, sport, dport, seq_c, 17),
            tcp(t + 2 * step, server, client, dport, sport, seq_s, 17),
        ]
    return out


def telnet_root(connections: int = 10, size: int = 32 * 1024, segment: int = 1400) -> list[Frame]:
    line = b"A" * size
    chunks = [line[i : i + segment] for i in range(0, size, segment)]
    return [
        f
        for i in range(connections)
        for f in session(
            i * 0.5,
            0x0A000001,
            0x0A000002,
            40000 + i,
            23,
            chunks,
            [b"login: root\r\n", b"root@host:~# "],
        )
    ]


def one_byte(segments: int = 100_000) -> list[Frame]:
    return session(0.0, 0x0A000001, 0x0A000002, 40000, 80, [b"A"] * segments, [])


def fragments(count: int = 40_000) -> list[Frame]:
    """Fragments of one UDP datagram, each 8 bytes, at offsets cycling through 8 KiB (overlaps)."""
    out = []
    for i in range(count):
        offset = (i * 8) % 8192
        more = 0x2000 if i < count - 1 else 0
        out.append(
            (
                T0 + i * 1e-5,
                _ip(0x0A000001, 0x0A000002, 17, b"B" * 8, ident=7, frag=more | (offset // 8)),
            )
        )
    return out


def http_flood(connections: int = 3000, size: int = 32 * 1024, segment: int = 1400) -> list[Frame]:
    """Connections all opened first, then each sends and receives `size` bytes, then all close."""
    data = [b"C" * segment] * (size // segment)
    sessions = [
        session(
            i * 1e-3,
            0x0A000000 + (i >> 8) + 256,
            0x0A000002,
            1024 + (i % 60000),
            80,
            data,
            data,
            close=False,
        )
        for i in range(connections)
    ]
    return sorted((f for s in sessions for f in s), key=lambda f: f[0])


def ordinary(packets: int, frame_bytes: int) -> list[Frame]:
    """HTTP connections of 20 packets (request, response segments of text with newlines, FINs):
    about `packets` packets of about `frame_bytes` bytes in total."""
    per = max(1, frame_bytes // max(1, packets) - 54)
    body = (b"<p>quarterly report, network update</p>\n" * (per // 40 + 1))[:per]
    out: list[Frame] = []
    for i in range(max(1, packets // 20)):
        out += session(
            i * 0.01, 0x0A000001, 0x0A000002 + (i % 50), 20000 + i % 40000, 80, [TEXT], [body] * 14
        )
    return out


def mixed() -> list[Frame]:
    """The three crafted captures and ordinary traffic, one after another."""
    parts = [telnet_root(), one_byte(20_000), fragments(10_000), ordinary(20_000, 20_000 * 150)]
    out, shift = [], 0.0
    for part in parts:
        out += [(t + shift, frame) for t, frame in part]
        shift = out[-1][0] - T0 + 10
    return out


def write_pcap(path: Path, frames: list[Frame]) -> Path:
    """A little-endian microsecond pcap of Ethernet frames."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in frames:
            sec = int(t)
            out.write(
                struct.pack("<IIII", sec, round((t - sec) * 1e6), len(frame), len(frame)) + frame
            )
    return path


def size(frames: list[Frame]) -> tuple[int, int]:
    """Packets and frame bytes."""
    return len(frames), sum(len(f) for _, f in frames)


CRAFTED = {"telnet_root": telnet_root, "one_byte": one_byte, "fragments": fragments, "mixed": mixed}


def captures() -> Iterator[tuple[str, list[Frame]]]:
    for name, build in CRAFTED.items():
        yield name, build()


def main(out: Annotated[Path, typer.Argument(help="Directory for the captures.")]) -> None:
    """Write every crafted capture, its ordinary twin and the HTTP flood."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frames in captures():
        write_pcap(out / f"{name}.pcap", frames)
        write_pcap(out / f"{name}-ordinary.pcap", ordinary(*size(frames)))
    write_pcap(out / "http_flood.pcap", http_flood())


if __name__ == "__main__":
    typer.run(main)
