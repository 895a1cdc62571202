"""The sender process's work: batches of rows to the server, the spool and retries.

Every batch gets an id when it is formed, kept with it in the spool and sent with every attempt,
so that the server stores a resent batch once; the parts of a batch split after a 400 get ids
derived from it (child_id). Batches that cannot be classified (server unreachable, 5xx, 429) are
written to the spool and retried with exponential backoff (at least the server's Retry-After);
nothing is dropped unless the spool is full or cannot be written, and then the drop is counted and
logged. When the server rejects records (400), only those are dropped (named by the server, else
found by halving the batch), logged and counted. When it refuses the agent (401/403) or its
certificate cannot be verified, sending stops and every batch is spooled for a later run: the run
fails.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from capture_agent.client import BadRecords, ClassifyClient, Refused, ServerError, retry_after
from capture_agent.spool import Spool
from desy.records import Record, Verdict, record

log = logging.getLogger("desy.agent.sender")
MAX_ID = 64  # characters in a batch id (desy.records.BATCH_ID_PATTERN)


def new_batch_id() -> str:
    """The id of a newly formed batch."""
    return uuid.uuid4().hex


def child_id(parent: str, suffix: str) -> str:
    """The id of a part of batch `parent` (suffix ".0"/".1": its halves, ".v": it less the records
    the server rejected): the same each time, and hashed when it would pass 64 characters."""
    child = parent + suffix
    return child if len(child) <= MAX_ID else hashlib.sha256(child.encode()).hexdigest()[:32]


class Orphaned(BaseException):
    """Raised in the sender process when the agent's main process dies (from a signal handler,
    so it also ends a read blocked on a half-written queue message)."""


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
        try:
            classified = self._attempt(batch_id, batch)
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

    def _attempt(self, batch_id: str, batch: list[Record]) -> Classified | None:
        """Classify a batch; None when the server is unavailable or refuses this agent (said and
        counted: the batch is to be kept). Raises ServerError when it cannot be classified."""
        try:
            return self._classify(batch_id, batch)
        except (httpx.TransportError, httpx.HTTPStatusError) as err:
            self._failed(err)
        except Refused as err:
            self._refused(err)
        return None

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
        self.backoff = min(self.max_backoff, max(0.5, self.backoff * 2, retry_after(err)))
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
                classified = self._attempt(batch_id, flows)
            except ServerError as err:
                log.error("%s; spooled batch %s dropped", err, path.name)
                self.counters.flows_rejected += len(flows)
                path.unlink()
                continue
            if classified is None:
                return
            path.unlink()
            self._deliver(*classified)

    def _drain(self, deadline: float) -> None:
        """Retry the spool until it is empty or the deadline passes."""
        while self.spool.pending() and not self.counters.refused and time.monotonic() < deadline:
            time.sleep(max(0.0, min(self.retry_at, deadline) - time.monotonic()))
            self._retry_spool(deadline)


def _describe(record: Record) -> str:
    return (
        f"{record.get('src_ip')}:{record.get('src_port')} -> {record.get('dst_ip')}:{record.get('dst_port')} "
        f"{record.get('protocol_type')}/{record.get('service')} at {record.get('start_time')}"
    )
