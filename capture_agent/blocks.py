"""Blocks of captured frames: what capture sources hand the engine, many frames at a time.

A block holds the frames' bytes in one buffer (with whatever lay between them, e.g. the pcap
record headers) and, per frame, where it starts, its length, its link type and its timestamp, in
plain typed arrays: reading, queueing and decoding then cost per block, not per packet.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class Block:
    """Frame i is data[offsets[i] : offsets[i] + lengths[i]], of link type linktypes[i], stamped
    ts[i] (seconds since the epoch)."""

    data: bytes = b""
    offsets: array = field(default_factory=lambda: array("Q"))
    lengths: array = field(default_factory=lambda: array("I"))
    linktypes: array = field(default_factory=lambda: array("H"))
    ts: array = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.offsets)

    def frames(self) -> Iterator[tuple[bytes, int, float]]:
        """(frame bytes, link type, timestamp) of each frame, in order."""
        data = memoryview(self.data)
        for start, size, linktype, ts in zip(self.offsets, self.lengths, self.linktypes, self.ts):
            yield bytes(data[start : start + size]), linktype, ts

    @classmethod
    def of(cls, frames: Iterable[tuple[bytes, int, float]]) -> Block:
        """A block of (frame, link type, timestamp) triples (tests, small sources)."""
        block, parts, offset = cls(), [], 0
        for frame, linktype, ts in frames:
            parts.append(frame)
            block.offsets.append(offset)
            block.lengths.append(len(frame))
            block.linktypes.append(linktype)
            block.ts.append(ts)
            offset += len(frame)
        block.data = b"".join(parts)
        return block
