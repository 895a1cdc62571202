"""Sending flow records to the model server: batches, a disk spool and retries.

Contract: POST {server}/classify with `Authorization: Bearer <token>` and {"flows": [record, ...]};
the answer is {"model_version": "...", "results": [{"label", "attack_probability", "category"}, ...]}
in request order. Batches that cannot be classified (server unreachable, 5xx, 429) are written to
the spool directory and retried with exponential backoff; nothing is dropped unless the spool is
full, and then the drop is counted and logged.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("desy.agent.client")

Record = dict[str, Any]
Verdict = dict[str, Any]


class ServerError(RuntimeError):
    """The server answered, but not with verdicts (a permanent error for that batch)."""


@dataclass
class SendCounters:
    """flows_spooled counts flows put in the spool; at exit, those still waiting there."""

    flows_classified: int = 0
    flows_spooled: int = 0
    flows_lost: int = 0
    flows_rejected: int = 0
    batches_sent: int = 0
    send_failures: int = 0


class ClassifyClient:
    """Thin httpx client for POST /classify."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def classify(self, flows: list[Record]) -> list[Verdict]:
        """Verdicts in request order, each with the model version added.

        Raises httpx.TransportError / httpx.HTTPStatusError (retryable: 5xx, 429) or ServerError.
        """
        response = self.http.post("/classify", json={"flows": flows})
        if response.status_code >= 500 or response.status_code == 429:
            response.raise_for_status()
        if response.status_code != 200:
            raise ServerError(f"server refused the batch: HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(flows):
            raise ServerError(f"server answered {len(results or [])} results for {len(flows)} flows")
        version = str(body.get("model_version", ""))
        return [dict(result, model_version=version) for result in results]

    def close(self) -> None:
        self.http.close()


class Spool:
    """Batches waiting for the server, one JSON file each, bounded in total bytes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.sequence = max((int(p.stem.split("-")[1]) for p in self._files()), default=0)

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def pending(self) -> int:
        """Number of batches waiting."""
        return len(self._files())

    def flow_count(self) -> int:
        """Number of flows waiting."""
        return sum(len(json.loads(p.read_bytes())["flows"]) for p in self._files())

    def put(self, flows: list[Record]) -> bool:
        """Store a batch; False (nothing written) when it would pass the size limit."""
        data = json.dumps({"flows": flows}, separators=(",", ":")).encode()
        if self.size() + len(data) > self.max_bytes:
            return False
        self.sequence += 1
        tmp = self.directory / f".batch-{self.sequence}.tmp"
        tmp.write_bytes(data)
        tmp.rename(self.directory / f"batch-{self.sequence}.json")
        return True

    def oldest(self) -> tuple[Path, list[Record]] | None:
        files = self._files()
        if not files:
            return None
        return files[0], json.loads(files[0].read_bytes())["flows"]


class Sender:
    """Batches rows from `inbox` (lists of row tuples in `fields` order, then None to finish),
    classifies them and hands (records, verdicts) to on_batch. Runs in its own process, see
    capture_agent.agent."""

    def __init__(self, client: ClassifyClient, spool: Spool, on_batch: Callable[[list[Record], list[Verdict]], None],
                 inbox: Any, fields: tuple[str, ...], batch_size: int = 256, batch_interval: float = 1.0,
                 max_backoff: float = 30.0) -> None:
        self.client, self.spool, self.on_batch, self.inbox, self.fields = client, spool, on_batch, inbox, fields
        self.batch_size, self.batch_interval, self.max_backoff = batch_size, batch_interval, max_backoff
        self.counters = SendCounters()
        self.backoff = 0.0
        self.retry_at = 0.0

    def run(self, drain_timeout: float) -> SendCounters:
        """Until the None sentinel: batch, send, spool and retry; then keep retrying the spool for
        drain_timeout seconds. Returns the counters."""
        batch: list[Record] = []
        started = time.monotonic()
        fields = self.fields
        while True:
            waited = time.monotonic() - started
            timeout = max(0.0, self.batch_interval - waited) if batch else self.batch_interval
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item and not batch:
                started = time.monotonic()
            batch.extend(dict(zip(fields, row)) for row in item)
            while len(batch) >= self.batch_size:
                self._send(batch[: self.batch_size])
                batch = batch[self.batch_size :]
            if batch and time.monotonic() - started >= self.batch_interval:
                self._send(batch)
                batch = []
            self._retry_spool()
        if batch:
            self._send(batch)
        self._drain(time.monotonic() + drain_timeout)
        return self.counters

    def _send(self, batch: list[Record]) -> None:
        if self.spool.pending() or time.monotonic() < self.retry_at:
            self._to_spool(batch)  # keep order: older spooled batches go first
            return
        try:
            verdicts = self.client.classify(batch)
        except (httpx.TransportError, httpx.HTTPStatusError) as err:
            self._failed(err)
            self._to_spool(batch)
            return
        except ServerError as err:
            log.error("%s; %d flows not classified", err, len(batch))
            self.counters.flows_rejected += len(batch)
            return
        self._deliver(batch, verdicts)

    def _deliver(self, batch: list[Record], verdicts: list[Verdict]) -> None:
        self.counters.batches_sent += 1
        self.counters.flows_classified += len(batch)
        self.backoff = 0.0
        self.on_batch(batch, verdicts)

    def _failed(self, err: Exception) -> None:
        self.counters.send_failures += 1
        self.backoff = min(self.max_backoff, max(0.5, self.backoff * 2))
        self.retry_at = time.monotonic() + self.backoff
        log.warning("server unavailable (%s); retrying in %.1f s, spooling meanwhile", err, self.backoff)

    def _to_spool(self, batch: list[Record]) -> None:
        if self.spool.put(batch):
            self.counters.flows_spooled += len(batch)
        else:
            self.counters.flows_lost += len(batch)
            log.error("spool full (%d bytes): %d flows dropped", self.spool.max_bytes, len(batch))

    def _retry_spool(self) -> None:
        """Send spooled batches, oldest first, while the server answers."""
        while time.monotonic() >= self.retry_at:
            oldest = self.spool.oldest()
            if oldest is None:
                return
            path, flows = oldest
            try:
                verdicts = self.client.classify(flows)
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                self._failed(err)
                return
            except ServerError as err:
                log.error("%s; spooled batch %s dropped", err, path.name)
                self.counters.flows_rejected += len(flows)
                path.unlink()
                continue
            path.unlink()
            self._deliver(flows, verdicts)

    def _drain(self, deadline: float) -> None:
        """Retry the spool until it is empty or the deadline passes."""
        while self.spool.pending() and time.monotonic() < deadline:
            time.sleep(max(0.0, min(self.retry_at, deadline) - time.monotonic()))
            self._retry_spool()
        self.counters.flows_spooled = self.spool.flow_count()
