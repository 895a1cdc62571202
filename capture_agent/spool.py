"""Batches waiting for the server on disk, each under its id, bounded in bytes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from desy.records import BATCH_ID_PATTERN, Record

log = logging.getLogger("desy.agent.spool")
BATCH_FILE = re.compile(r"batch-(\d+)\.json")


class Spool:
    """Batches waiting for the server, one JSON file each ({"id": ..., "flows": [...]}), bounded
    in total bytes. A file that cannot be read as a batch (what a power loss can leave) is renamed
    *.corrupt, counted and logged, and the spool goes on without it."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.corrupt = 0
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # batches hold what the network said
        for partial in directory.glob(".batch-*.tmp"):  # a write cut short by a crash
            partial.unlink(missing_ok=True)
        self.sequence = max((_number(p) for p in self._files()), default=0)

    def _files(self) -> list[Path]:
        return sorted(
            (p for p in self.directory.glob("batch-*.json") if BATCH_FILE.fullmatch(p.name)),
            key=_number,
        )

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def pending(self) -> int:
        """Number of batches waiting."""
        return len(self._files())

    def flow_count(self) -> int:
        """Number of flows waiting."""
        return sum(len(batch[1]) for batch in map(self.load, self._files()) if batch)

    def put(self, batch_id: str, flows: list[Record]) -> bool:
        """Store a batch; False (nothing written) when it would pass the size limit. Raises
        OSError when it cannot be written (nothing is left behind)."""
        data = json.dumps({"id": batch_id, "flows": flows}, separators=(",", ":")).encode()
        if self.size() + len(data) > self.max_bytes:
            return False
        self.sequence += 1
        tmp = self.directory / f".batch-{self.sequence}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())  # complete on disk before it is named a batch
            tmp.rename(self.directory / f"batch-{self.sequence}.json")
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def load(self, path: Path) -> tuple[str, list[Record]] | None:
        """(id, flows) of a spooled batch; None if it is unreadable (then quarantined). A batch
        spooled by an agent before batch ids gets one from its content: the same at every read."""
        try:
            data = path.read_bytes()
            body = json.loads(data)
            flows, batch_id = body["flows"], body.get("id")
            if not isinstance(flows, list) or not all(isinstance(f, dict) for f in flows):
                raise ValueError("flows is not a list of records")
            if batch_id is None:
                batch_id = hashlib.sha256(data).hexdigest()[:32]
            if not isinstance(batch_id, str) or not re.fullmatch(BATCH_ID_PATTERN, batch_id):
                raise ValueError("not a batch id")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self._quarantine(path, err)
            return None
        return batch_id, flows

    def _quarantine(self, path: Path, err: Exception) -> None:
        corrupt = path.with_name(path.name + ".corrupt")
        path.rename(corrupt)
        self.corrupt += 1
        log.error(
            "spool file %s is not a readable batch (%s): renamed %s, its flows are not sent",
            path.name,
            err,
            corrupt.name,
        )

    def oldest(self) -> tuple[Path, str, list[Record]] | None:
        """The oldest readable batch: (file, id, flows)."""
        for path in self._files():
            batch = self.load(path)
            if batch is not None:
                return path, *batch
        return None


def _number(path: Path) -> int:
    return int(path.stem.split("-")[1])
