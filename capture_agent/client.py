"""Sending flow records to the model server: batches, a disk spool and retries.

Contract: POST {server}/classify with `Authorization: Bearer <token>` and {"flows": [record, ...]};
the answer is {"model_version": "...", "results": [verdict, ...]} in request order (records and
verdicts: desy.records). Batches that cannot be classified (server unreachable, 5xx, 429) are written to
the spool directory and retried with exponential backoff; nothing is dropped unless the spool is
full, and then the drop is counted and logged. When the server rejects records (400), only those
are dropped (named by the server, else found by halving the batch), logged and counted. When it
refuses the agent (401/403) or its certificate cannot be verified, sending stops and every batch
is spooled for a later run: the run fails.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from desy.records import CLASSIFY_PATH, SOURCE_HEADERS, Record, Verdict, record

log = logging.getLogger("desy.agent.client")


class ServerError(RuntimeError):
    """The server answered, but not with verdicts (a permanent error for that batch)."""


class BadRecords(ServerError):
    """The server rejected records of the batch (400): how many, and the indexes it named."""

    def __init__(self, message: str, invalid: int, indexes: set[int]) -> None:
        super().__init__(message)
        self.invalid, self.indexes = invalid, indexes


class Orphaned(BaseException):
    """Raised in the sender process when the agent's main process dies (from a signal handler,
    so it also ends a read blocked on a half-written queue message)."""


class Refused(RuntimeError):
    """The server refuses this agent (401/403), or its certificate cannot be verified: sending
    again cannot help until the operator fixes the token or the CA."""


@dataclass
class SendCounters:
    """What happened to the flows, reported at exit."""

    flows_classified: int = 0
    flows_spooled: int = 0  # put in the spool; at exit, those still waiting there
    flows_lost: int = 0  # dropped because the spool was full
    flows_rejected: int = 0  # refused by the server as invalid (400)
    batches_sent: int = 0
    send_failures: int = 0  # server unreachable, or a 5xx or 429 answer
    refused: str = ""  # why the server refused this agent, if it did


class ClassifyClient:
    """Thin httpx client for POST CLASSIFY_PATH."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout: float = 10.0,
        ca_cert: Path | None = None,
        source: tuple[str, str] | None = None,
    ) -> None:
        """source: where this agent captures (interface or pcap file) and its log directory,
        told to the server with every request for the alert store (analysts' drill-down)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if source is not None:
            headers |= {
                name: quote(value) for name, value in zip(SOURCE_HEADERS, source, strict=True)
            }
        verify = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
        self.http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout, verify=verify
        )

    def classify(self, flows: list[Record]) -> list[Verdict]:
        """Verdicts in request order, each with the model version that gave it added.

        Raises httpx.TransportError / httpx.HTTPStatusError (retryable: 5xx, 429), Refused,
        BadRecords or ServerError.
        """
        try:
            response = self.http.post(CLASSIFY_PATH, json={"flows": flows})
        except httpx.TransportError as err:
            if _certificate_error(err):
                raise Refused(f"cannot verify the server's certificate: {err}") from None
            raise
        status = response.status_code
        if status >= 500 or status == 429:
            response.raise_for_status()
        if status in (401, 403):
            raise Refused(f"the server refused this agent (HTTP {status}): check the token")
        if status == 400:
            raise _bad_records(response)
        if status != 200:
            raise ServerError(f"server refused the batch: HTTP {status}: {response.text[:300]}")
        body = response.json()
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(flows):
            raise ServerError(
                f"server answered {len(results or [])} results for {len(flows)} flows"
            )
        version = str(body.get("model_version", ""))
        return [dict(result, model_version=version) for result in results]

    def close(self) -> None:
        self.http.close()


def _certificate_error(err: Exception) -> bool:
    cause = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _bad_records(response: httpx.Response) -> ServerError:
    """BadRecords from a 400 naming the bad records, else a plain ServerError."""
    message = f"server rejected records: {response.text[:300]}"
    try:
        body = response.json()
        indexes = {int(error["loc"][1]) for error in body["detail"] if error["loc"][0] == "flows"}
        return BadRecords(message, int(body["invalid_records"]), indexes)
    except (ValueError, KeyError, IndexError, TypeError):
        return BadRecords(message, 0, set())


class Spool:
    """Batches waiting for the server, one JSON file each, bounded in total bytes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # batches hold what the network said
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
        with os.fdopen(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "wb"
        ) as out:
            out.write(data)
        tmp.rename(self.directory / f"batch-{self.sequence}.json")
        return True

    def oldest(self) -> tuple[Path, list[Record]] | None:
        files = self._files()
        if not files:
            return None
        return files[0], json.loads(files[0].read_bytes())["flows"]


class Sender:
    """Batches rows from `inbox` (lists of rows in desy.records.ROW_FIELDS order, then None to
    finish) as records of agent_id, classifies them and hands (records, verdicts) to on_batch.
    Runs in its own process, see capture_agent.agent."""

    def __init__(
        self,
        client: ClassifyClient,
        spool: Spool,
        on_batch: Callable[[list[Record], list[Verdict]], None],
        inbox: Any,
        agent_id: str,
        batch_size: int = 256,
        batch_interval: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.client, self.spool, self.on_batch, self.inbox = client, spool, on_batch, inbox
        self.agent_id = agent_id
        self.batch_size, self.batch_interval, self.max_backoff = (
            batch_size,
            batch_interval,
            max_backoff,
        )
        self.counters = SendCounters()
        self.backoff = 0.0
        self.retry_at = 0.0

    def run(self, drain_timeout: float) -> SendCounters:
        """Until the None sentinel: batch, send, spool and retry; then keep retrying the spool for
        drain_timeout seconds. Returns the counters. If the main process dies (Orphaned is
        raised, see capture_agent.agent), the flows in hand are spooled for the next start."""
        self.batch: list[Record] = []
        try:
            self._collect()
            if self.batch:
                self._send(self.batch)
                self.batch = []
            self._drain(time.monotonic() + drain_timeout)
        except Orphaned:
            log.error(
                "the agent's main process is gone: spooling %d flows and stopping", len(self.batch)
            )
            if self.batch:
                self._to_spool(self.batch)
        self.counters.flows_spooled = self.spool.flow_count()
        return self.counters

    def _collect(self) -> None:
        """Batch rows from the inbox until the None sentinel, sending full or old batches."""
        started = time.monotonic()
        agent_id = self.agent_id
        while True:
            waited = time.monotonic() - started
            timeout = max(0.0, self.batch_interval - waited) if self.batch else self.batch_interval
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                item = ()
            if item is None:
                return
            if item and not self.batch:
                started = time.monotonic()
            self.batch.extend(record(row, agent_id) for row in item)
            while len(self.batch) >= self.batch_size:
                self._send(self.batch[: self.batch_size])
                self.batch = self.batch[self.batch_size :]
            if self.batch and time.monotonic() - started >= self.batch_interval:
                self._send(self.batch)
                self.batch = []
            self._retry_spool()

    def _send(self, batch: list[Record]) -> None:
        if self.counters.refused or self.spool.pending() or time.monotonic() < self.retry_at:
            self._to_spool(batch)  # keep order: older spooled batches go first
            return
        try:
            records, verdicts = self._classify(batch)
        except (httpx.TransportError, httpx.HTTPStatusError) as err:
            self._failed(err)
            self._to_spool(batch)
            return
        except Refused as err:
            self._refused(err)
            self._to_spool(batch)
            return
        except ServerError as err:
            log.error("%s; %d flows not classified", err, len(batch))
            self.counters.flows_rejected += len(batch)
            return
        self._deliver(records, verdicts)

    def _classify(self, batch: list[Record]) -> tuple[list[Record], list[Verdict]]:
        """The batch's valid records and their verdicts; the records the server rejects are
        logged, counted and dropped (those it names, else found by halving the batch)."""
        if not batch:
            return [], []
        try:
            return batch, self.client.classify(batch)
        except BadRecords as bad:
            named = {i for i in bad.indexes if 0 <= i < len(batch)}
            if len(batch) == 1 or (named and len(named) == bad.invalid):
                rejected = named or {0}
                for index in sorted(rejected):
                    log.error("server rejected flow %s: %s", _describe(batch[index]), bad)
                self.counters.flows_rejected += len(rejected)
                return self._classify([r for i, r in enumerate(batch) if i not in rejected])
            half = len(batch) // 2
            first, second = self._classify(batch[:half]), self._classify(batch[half:])
            return first[0] + second[0], first[1] + second[1]

    def _deliver(self, batch: list[Record], verdicts: list[Verdict]) -> None:
        self.counters.batches_sent += 1
        self.counters.flows_classified += len(batch)
        self.backoff = 0.0
        self.on_batch(batch, verdicts)

    def _failed(self, err: Exception) -> None:
        self.counters.send_failures += 1
        self.backoff = min(self.max_backoff, max(0.5, self.backoff * 2))
        self.retry_at = time.monotonic() + self.backoff
        log.warning(
            "server unavailable (%s); retrying in %.1f s, spooling meanwhile", err, self.backoff
        )

    def _refused(self, err: Refused) -> None:
        if not self.counters.refused:
            log.error("%s; spooling every batch from now on (they are sent at the next start)", err)
        self.counters.refused = str(err)

    def _to_spool(self, batch: list[Record]) -> None:
        if self.spool.put(batch):
            self.counters.flows_spooled += len(batch)
        else:
            self.counters.flows_lost += len(batch)
            log.error("spool full (%d bytes): %d flows dropped", self.spool.max_bytes, len(batch))

    def _retry_spool(self) -> None:
        """Send spooled batches, oldest first, while the server answers."""
        while not self.counters.refused and time.monotonic() >= self.retry_at:
            oldest = self.spool.oldest()
            if oldest is None:
                return
            path, flows = oldest
            try:
                records, verdicts = self._classify(flows)
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                self._failed(err)
                return
            except Refused as err:
                self._refused(err)
                return
            except ServerError as err:
                log.error("%s; spooled batch %s dropped", err, path.name)
                self.counters.flows_rejected += len(flows)
                path.unlink()
                continue
            path.unlink()
            self._deliver(records, verdicts)

    def _drain(self, deadline: float) -> None:
        """Retry the spool until it is empty or the deadline passes."""
        while self.spool.pending() and not self.counters.refused and time.monotonic() < deadline:
            time.sleep(max(0.0, min(self.retry_at, deadline) - time.monotonic()))
            self._retry_spool()


def _describe(record: Record) -> str:
    return (
        f"{record.get('src_ip')}:{record.get('src_port')} -> {record.get('dst_ip')}:{record.get('dst_port')} "
        f"{record.get('protocol_type')}/{record.get('service')} at {record.get('start_time')}"
    )
