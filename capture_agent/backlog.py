"""Rows waiting on disk while the sender is behind (live capture), first in, first out.

Live capture never waits for the sender (a packet not read changes the features of the
connections around it), and a flood of new connections can outrun classification for a while:
the rows wait here, in unnamed files of the log directory (gone with the process), pickled a list
at a time, in segments so that the space of rows already taken is given back. Bounded in bytes:
a list that does not fit is refused (the caller counts its rows as lost).
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from collections import deque
from pathlib import Path

SEGMENT_BYTES = 64 * 2**20  # a new file past this size; a file is closed once read


class Segment:
    """One unnamed file: lists appended at its end, read from its start."""

    def __init__(self, directory: Path) -> None:
        self.file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by Backlog)
        self.chunks: deque[tuple[int, int, int]] = deque()  # offset, bytes, rows
        self.size = 0

    def append(self, data: bytes, rows: int) -> None:
        if os.pwrite(self.file.fileno(), data, self.size) != len(data):
            raise OSError(errno.ENOSPC, "short write to the backlog")
        self.chunks.append((self.size, len(data), rows))
        self.size += len(data)

    def first(self) -> list[tuple]:
        offset, length, _ = self.chunks[0]
        return pickle.loads(os.pread(self.file.fileno(), length, offset))


class Backlog:
    """Lists of rows on disk, at most max_bytes of them at a time."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segments: deque[Segment] = deque()
        self.rows = 0  # rows waiting
        self.bytes = 0  # bytes of the files open
        self.rows_total = 0  # rows that waited here, this run
        self._first: list[tuple] | None = None  # the oldest list, once read

    def __len__(self) -> int:
        return self.rows

    def put(self, rows: list[tuple]) -> bool:
        """Append rows; False (nothing written) when they would pass max_bytes. Raises OSError
        when the disk refuses them (nothing is counted as waiting then)."""
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        if self.bytes + len(data) > self.max_bytes:
            return False
        if not self.segments or self.segments[-1].size >= SEGMENT_BYTES:
            self.segments.append(Segment(self.directory))
        self.segments[-1].append(data, len(rows))
        self.bytes += len(data)
        self.rows += len(rows)
        self.rows_total += len(rows)
        return True

    def first(self) -> list[tuple]:
        """The oldest list, left in place (the backlog must not be empty)."""
        if self._first is None:
            self._first = self.segments[0].first()
        return self._first

    def drop_first(self) -> None:
        """Remove the oldest list (once handed over)."""
        segment = self.segments[0]
        self.rows -= segment.chunks.popleft()[2]
        self._first = None
        if segment.chunks:
            return
        if len(self.segments) > 1 or segment.size >= SEGMENT_BYTES:
            self._close(self.segments.popleft())
        else:  # the only file, emptied: write it again from its start
            segment.file.truncate(0)
            self.bytes -= segment.size
            segment.size = 0

    def close(self) -> None:
        while self.segments:
            self._close(self.segments.popleft())
        self.rows, self._first = 0, None

    def _close(self, segment: Segment) -> None:
        self.bytes -= segment.size
        segment.file.close()
