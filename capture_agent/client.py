"""Sending flow records to the model server: batches, a disk spool and retries.

Contract: POST {server}/classify with `Authorization: Bearer <token>`, the batch's id in
BATCH_HEADER and {"flows": [record, ...]}; the answer is {"model_version": "...", "results":
[verdict, ...]} in request order (records and verdicts: desy.records). Every batch gets an id when
it is formed, kept with it in the spool and sent with every attempt, so that the server stores a
resent batch once; the parts of a batch split after a 400 get ids derived from it (child_id).
Batches that cannot be classified (server unreachable, 5xx, 429) are written to the spool
directory and retried with exponential backoff (at least the server's Retry-After); nothing is
dropped unless the spool is full or cannot be written, and then the drop is counted and logged.
When the server rejects records (400), only those are dropped (named by the server, else found by
halving the batch), logged and counted. When it refuses the agent (401/403) or its certificate
cannot be verified, sending stops and every batch is spooled for a later run: the run fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from desy.records import (
    BATCH_HEADER,
    BATCH_ID_PATTERN,
    CLASSIFY_PATH,
    SOURCE_HEADERS,
    Record,
    Verdict,
    record,
)

log = logging.getLogger("desy.agent.client")
BATCH_FILE = re.compile(r"batch-(\d+)\.json")
MAX_ID = 64  # characters in a batch id (BATCH_ID_PATTERN)


def new_batch_id() -> str:
    """The id of a newly formed batch."""
    return uuid.uuid4().hex


def child_id(parent: str, suffix: str) -> str:
    """The id of a part of batch `parent` (suffix ".0"/".1": its halves, ".v": it less the records
    the server rejected): the same each time, and hashed when it would pass 64 characters."""
    child = parent + suffix
    return child if len(child) <= MAX_ID else hashlib.sha256(child.encode()).hexdigest()[:32]


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

    flows_received: int = 0  # from the capture, this run
    flows_spooled_before: int = 0  # waiting in the spool at start (from an earlier run)
    # received + spooled_before = classified + spooled + rejected + lost
    flows_classified: int = 0
    flows_spooled: int = 0  # put in the spool; at exit, those still waiting there
    flows_lost: int = 0  # the spool was full or could not be written, or the sender failed
    flows_rejected: int = 0  # refused by the server as invalid (400)
    spool_files_corrupt: int = 0  # unreadable spool files, renamed *.corrupt (flows not sent)
    batches_sent: int = 0
    send_failures: int = 0  # server unreachable, or a 5xx or 429 answer
    refused: str = ""  # why the server refused this agent, if it did
    spool_error: str = ""  # why the spool could not be written, if it could not
    sender_error: str = ""  # the error that stopped the sender, if one did

    def tally(self) -> list[int]:
        """The TALLIES, in order."""
        return [getattr(self, name) for name in TALLIES]

    def residual(self) -> int:
        """Flows received or spooled before that are in no other count."""
        accounted = self.flows_classified + self.flows_spooled + self.flows_rejected
        return self.flows_received + self.flows_spooled_before - accounted - self.flows_lost


#: The counters the sender keeps up to date in shared memory while it runs, so that the main
#: process knows them even if the sender is killed.
TALLIES = (
    "flows_received",
    "flows_spooled_before",
    "flows_classified",
    "flows_rejected",
    "flows_lost",
    "batches_sent",
    "send_failures",
)


class ClassifyClient:
    """Thin httpx client for POST CLASSIFY_PATH. The timeout stays well above the few seconds the
    server may wait for its store to commit a batch before answering."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout: float = 15.0,
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

    def classify(self, flows: list[Record], batch_id: str) -> list[Verdict]:
        """Verdicts in request order, each with the model version that gave it added.

        Raises httpx.TransportError / httpx.HTTPStatusError (retryable: 5xx, 429), Refused,
        BadRecords or ServerError.
        """
        try:
            response = self.http.post(
                CLASSIFY_PATH, json={"flows": flows}, headers={BATCH_HEADER: batch_id}
            )
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
        try:
            body = response.json()
            results = body["results"]
            version = str(body.get("model_version", ""))
            verdicts = [dict(result, model_version=version) for result in results]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServerError(
                f"server answered HTTP 200 without verdicts: {response.text[:300]}"
            ) from None
        if len(verdicts) != len(flows):
            raise ServerError(f"server answered {len(verdicts)} results for {len(flows)} flows")
        return verdicts

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


#: A batch's classified records and their verdicts, and the records the server rejected.
Classified = tuple[list[Record], list[Verdict], list[Record]]


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
        tally: Any = None,
    ) -> None:
        """tally: a shared array of len(TALLIES) integers kept up to date, if given."""
        self.client, self.spool, self.on_batch, self.inbox = client, spool, on_batch, inbox
        self.tally = tally
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
        raised, see capture_agent.agent), the flows in hand are spooled for the next start; if
        anything fails, they are spooled if they can be, the rest counted as lost."""
        self.batch: list[Record] = []  # rows not yet in a batch
        self.in_flight: tuple[str, list[Record]] | None = None  # the batch being sent, its id
        c = self.counters
        try:
            c.flows_spooled_before = self.spool.flow_count()
            self._publish()
            self._collect()
            self._send_rows(len(self.batch))
            self._drain(time.monotonic() + drain_timeout)
        except Orphaned:
            log.error("the agent's main process is gone: spooling the flows in hand and stopping")
            self._spool_in_hand()
        except Exception as err:
            c.sender_error = f"{type(err).__name__}: {err}"
            log.exception("the sender failed: spooling the flows in hand and stopping")
            self._spool_in_hand()
        c.flows_spooled = self.spool.flow_count()
        c.spool_files_corrupt = self.spool.corrupt
        if c.sender_error:
            c.flows_lost += max(0, c.residual())
        return c

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
            self.counters.flows_received += len(item)
            self._publish()
            self.batch.extend(record(row, agent_id) for row in item)
            while len(self.batch) >= self.batch_size:
                self._send_rows(self.batch_size)
            if self.batch and time.monotonic() - started >= self.batch_interval:
                self._send_rows(len(self.batch))
            self._retry_spool()
            self._publish()

    def _publish(self) -> None:
        if self.tally is not None:
            self.tally[:] = self.counters.tally()

    def _spool_in_hand(self) -> None:
        """Spool the batch being sent (under its id) and the rows not yet in a batch."""
        if self.in_flight is not None:
            batch_id, batch = self.in_flight
            self.in_flight = None
            self._to_spool(batch, batch_id)
        batch, self.batch = self.batch, []
        self._to_spool(batch)

    def _send_rows(self, count: int) -> None:
        """Form a batch of the first `count` rows waiting, under a new id, and send it."""
        if count:
            batch, self.batch = self.batch[:count], self.batch[count:]
            self._send(new_batch_id(), batch)

    def _send(self, batch_id: str, batch: list[Record]) -> None:
        """Classify a batch, or spool it."""
        if self.counters.refused or self.spool.pending() or time.monotonic() < self.retry_at:
            self._to_spool(batch, batch_id)  # keep order: older spooled batches go first
            return
        self.in_flight = batch_id, batch
        classified = None
        try:
            classified = self._classify(batch_id, batch)
        except (httpx.TransportError, httpx.HTTPStatusError) as err:
            self._failed(err)
        except Refused as err:
            self._refused(err)
        except ServerError as err:
            log.error("%s; %d flows not classified", err, len(batch))
            self.counters.flows_rejected += len(batch)
            self.in_flight = None
            return
        self.in_flight = None
        if classified is None:
            self._to_spool(batch, batch_id)
        else:
            self._deliver(*classified)

    def _classify(self, batch_id: str, batch: list[Record]) -> Classified:
        """Classify a batch: the records the server rejects are logged and left out (those it
        names, else found by halving the batch); the parts sent get ids derived from batch_id,
        the same at every attempt."""
        if not batch:
            return [], [], []
        try:
            return batch, self.client.classify(batch, batch_id), []
        except BadRecords as bad:
            named = {i for i in bad.indexes if 0 <= i < len(batch)}
            if len(batch) == 1 or (named and len(named) == bad.invalid):
                rejected = named or {0}
                for index in sorted(rejected):
                    log.error("server rejected flow %s: %s", _describe(batch[index]), bad)
                valid = [r for i, r in enumerate(batch) if i not in rejected]
                records, verdicts, more = self._classify(child_id(batch_id, ".v"), valid)
                return records, verdicts, [batch[i] for i in sorted(rejected)] + more
            half = len(batch) // 2
            first = self._classify(child_id(batch_id, ".0"), batch[:half])
            second = self._classify(child_id(batch_id, ".1"), batch[half:])
            return first[0] + second[0], first[1] + second[1], first[2] + second[2]

    def _deliver(self, records: list[Record], verdicts: list[Verdict], rejected: list) -> None:
        self.counters.flows_rejected += len(rejected)
        self.backoff = 0.0
        if records:
            self.counters.batches_sent += 1
            self.counters.flows_classified += len(records)
            self._publish()
            self.on_batch(records, verdicts)

    def _failed(self, err: Exception) -> None:
        self.counters.send_failures += 1
        self.backoff = min(self.max_backoff, max(0.5, self.backoff * 2, _retry_after(err)))
        self.retry_at = time.monotonic() + self.backoff
        why = f"HTTP {err.response.status_code}" if isinstance(err, httpx.HTTPStatusError) else err
        log.warning(
            "server unavailable (%s); retrying in %.1f s, spooling meanwhile", why, self.backoff
        )

    def _refused(self, err: Refused) -> None:
        if not self.counters.refused:
            log.error("%s; spooling every batch from now on (they are sent at the next start)", err)
        self.counters.refused = str(err)

    def _to_spool(self, batch: list[Record], batch_id: str | None = None) -> None:
        """Spool a batch; when the spool is full or cannot be written, count its flows as lost
        (and say so the first time)."""
        if not batch:
            return
        try:
            if self.spool.put(batch_id or new_batch_id(), batch):
                return
            reason = f"spool full ({self.spool.max_bytes} bytes)"
        except OSError as err:
            reason = f"cannot write the spool: {err}"
            self.counters.spool_error = self.counters.spool_error or str(err)
        if not self.counters.flows_lost:
            log.error("%s: %d flows dropped, and every batch it cannot hold", reason, len(batch))
        self.counters.flows_lost += len(batch)
        self._publish()

    def _retry_spool(self, deadline: float = float("inf")) -> None:
        """Send spooled batches, oldest first, while the server answers (until deadline)."""
        while (
            not self.counters.refused
            and time.monotonic() >= self.retry_at
            and time.monotonic() < deadline
        ):
            oldest = self.spool.oldest()
            if oldest is None:
                return
            path, batch_id, flows = oldest
            try:
                classified = self._classify(batch_id, flows)
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
            self._deliver(*classified)

    def _drain(self, deadline: float) -> None:
        """Retry the spool until it is empty or the deadline passes."""
        while self.spool.pending() and not self.counters.refused and time.monotonic() < deadline:
            time.sleep(max(0.0, min(self.retry_at, deadline) - time.monotonic()))
            self._retry_spool(deadline)


def _retry_after(err: Exception) -> float:
    """The seconds a 503 or 429 answer asks to wait (its Retry-After), else 0."""
    if not isinstance(err, httpx.HTTPStatusError):
        return 0.0
    try:
        return float(err.response.headers.get("Retry-After", 0))
    except ValueError:
        return 0.0


def _describe(record: Record) -> str:
    return (
        f"{record.get('src_ip')}:{record.get('src_port')} -> {record.get('dst_ip')}:{record.get('dst_port')} "
        f"{record.get('protocol_type')}/{record.get('service')} at {record.get('start_time')}"
    )
