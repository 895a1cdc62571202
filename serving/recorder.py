"""Recording verdicts in the alert store from a background thread: group commit.

A request queues its classified batch and gets a future, done once the store has committed the
batch: the server answers only then. The writer thread writes whatever is queued as soon as it
can, in one transaction (batches queued while a write runs go together in the next one), then
completes their futures. It creates or upgrades the schema first, retries with backoff while
the store is down or locked (said in the log and by `status`), and purges alerts and batch ids
older than the retention once a minute. Records the store refuses are left out, logged and
counted, and do not hold up the others. A full queue refuses a batch at once (QueueFull): the
agent keeps it and resends it. What cannot be written by shutdown is counted in one log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, NamedTuple

from alerts.database import migrate
from alerts.store import UNKNOWN_SOURCE, Batch, Classified, Source, Store, Written, error_line
from serving.notifier import Notifier

log = logging.getLogger("desy.serving.store")

#: Seconds between purges of what is past the retention (and between checks of a store that
#: could not be purged, when no write tells whether it is back).
PURGE_INTERVAL, RECHECK_INTERVAL = 60.0, 5.0
#: Refused records named in the log per write; the others are counted in one more line.
REFUSALS_LOGGED = 10


class QueueFull(Exception):
    """The queue has no room for a batch: it was not queued (resend it later)."""


class NotWritten(Exception):
    """The recorder stopped before the store committed the batch."""


class _Queued(NamedTuple):
    """A request's batch as it was queued (made into Classified records by the writer)."""

    at: float
    model_version: str
    records: Sequence[Any]
    verdicts: Sequence[Any]
    source: Source
    batch_id: str | None
    done: Future[None]

    def batch(self) -> Batch:
        return Batch(
            [
                Classified(self.at, self.model_version, record, verdict, self.source)
                for record, verdict in zip(self.records, self.verdicts, strict=True)
            ],
            self.batch_id,
        )


class Recorder:
    """Queues classified batches and writes them to the store from its own thread."""

    def __init__(
        self,
        store: Store,
        keep_normal: bool = False,
        max_pending: int = 200_000,
        retention_days: float = 30.0,
        max_bytes: int = 1 << 30,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        on_refused: Callable[[int], None] = lambda n: None,
        on_status: Callable[[str], None] = lambda why: None,
        notifier: Notifier | None = None,
    ) -> None:
        """on_status(why) is told why the store cannot be written, and "" once it can."""
        self.store, self.keep_normal = store, keep_normal
        self.max_pending = max_pending
        self.retention, self.max_bytes = retention_days * 86400, max_bytes
        self.on_written, self.on_dropped, self.on_refused = on_written, on_dropped, on_refused
        self.on_status, self.notifier = on_status, notifier
        if notifier is not None:
            store.report_incidents = True  # what the writes do to incidents, for the webhook
        self.queue: list[_Queued] = []
        self.pending = 0  # verdicts queued or being written
        self.lost = 0  # verdicts not written by shutdown
        self.status = "alert store not ready yet (preparing its schema)"
        on_status(self.status)
        self.wake = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="desy-store-writer", daemon=True)
        self.thread.start()

    def submit(
        self,
        model_version: str,
        records: Sequence[Any],
        verdicts: Sequence[Any],
        source: Source = UNKNOWN_SOURCE,
        batch_id: str | None = None,
    ) -> Future[None]:
        """Queue a classified batch (records: mappings), where its agent captures and the id it
        named the batch with; the future is done once the store has committed it (or found it
        stored already), or fails with NotWritten. Never blocks; raises QueueFull if the batch
        does not fit."""
        if len(records) != len(verdicts):
            raise ValueError(f"{len(records)} records but {len(verdicts)} verdicts")
        done: Future[None] = Future()
        done.set_running_or_notify_cancel()  # a request that stops waiting cannot cancel it
        queued = _Queued(time.time(), model_version, records, verdicts, source, batch_id, done)
        with self.wake:
            if self.stopping.is_set():
                raise QueueFull("the server is stopping")
            if self.pending + len(verdicts) > self.max_pending:
                raise QueueFull(
                    f"the alert store's queue is full ({self.pending} verdicts waiting)"
                )
            self.pending += len(verdicts)
            self.queue.append(queued)
            self.wake.notify()
        return done

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (one try, within timeout), then stop the thread; what could not
        be written is counted and said in one line."""
        self.stopping.set()
        with self.wake:
            self.wake.notify()
        self.thread.join(timeout)
        if self.thread.is_alive():
            self._lose(self.pending, f"still being written after {timeout:.0f} s")
        if self.notifier is not None:
            self.notifier.close()

    def _run(self) -> None:
        self._until_ready(lambda: migrate(self.store.engine), "preparing its schema")
        next_purge = time.monotonic()
        while True:
            queued = self._next(next_purge)
            if queued:
                if not self._until_ready(partial(self._write, queued), "writing"):
                    self._abandon(queued)
            elif self.stopping.is_set():
                return
            if time.monotonic() >= next_purge:
                purged = self._attempt(self._retain, "purging old alerts")
                next_purge = time.monotonic() + (PURGE_INTERVAL if purged else RECHECK_INTERVAL)

    def _next(self, until: float) -> list[_Queued]:
        """What is queued, once there is something (or it is time to purge, or stopping)."""
        with self.wake:
            while not self.queue and not self.stopping.is_set():
                if not self.wake.wait(max(0.0, until - time.monotonic())):
                    break
            queued, self.queue = self.queue, []
        return queued

    def _write(self, queued: list[_Queued]) -> None:
        written = self.store.write_batches([item.batch() for item in queued], self.keep_normal)
        self._done(queued)
        for item in queued:
            item.done.set_result(None)
        if self.notifier is not None and written.incidents:
            self.notifier.submit(written.incidents)
        self.on_written(written.counted)
        if written.refused:
            self._refused(written)

    def _refused(self, written: Written) -> None:
        """Say which records the store refused (the first REFUSALS_LOGGED) and count them."""
        for item, why in written.refused[:REFUSALS_LOGGED]:
            record = item.record
            log.error(
                "alert store refused a record (agent %s, %s:%s -> %s:%s at %s, protocol %s): %s",
                *(repr(record.get(name))[:80] for name in _NAMED),
                why,
            )
        if len(written.refused) > REFUSALS_LOGGED:
            log.error("alert store refused %d more records", len(written.refused) - REFUSALS_LOGGED)
        self.on_refused(len(written.refused))

    def _retain(self) -> None:
        """Delete alerts past the retention age, then (SQLite) the oldest past the size limit."""
        self.store.purge(time.time() - self.retention)
        if deleted := self.store.shrink(self.max_bytes):
            log.warning(
                "alert store over %d MiB: %d oldest alerts deleted", self.max_bytes >> 20, deleted
            )

    def _done(self, queued: list[_Queued]) -> None:
        with self.wake:
            self.pending -= sum(len(item.verdicts) for item in queued)

    def _abandon(self, queued: list[_Queued]) -> None:
        """Stopping with the store down: the batches are not written."""
        self._done(queued)
        for item in queued:
            item.done.set_exception(NotWritten("the server stopped before the store was back"))
        self._lose(sum(len(item.verdicts) for item in queued), self.status)

    def _lose(self, count: int, why: str) -> None:
        self.lost += count
        log.error(
            "at shutdown: %d verdicts could not be written to the alert store (%s)", count, why
        )
        self.on_dropped(count)

    def _until_ready(self, action: Callable[[], Any], what: str) -> bool:
        """Run action, retrying with backoff (0.5 s doubling to 30 s); False if the recorder
        stopped before it succeeded (after one last try)."""
        delay = 0.5
        while not self._attempt(action, what, f" (retrying in {delay:.1f} s)"):
            if self.stopping.is_set():
                return False
            self.stopping.wait(delay)
            delay = min(delay * 2, 30.0)
        return True

    def _attempt(self, action: Callable[[], Any], what: str, retry: str = "") -> bool:
        """Run action once; on failure, say so (status and log) and return False."""
        try:
            action()
        except Exception as err:  # noqa: BLE001 (the store down, locked or unusable)
            self._status(f"alert store unreachable ({what}): {error_line(err)}")
            if not self.stopping.is_set():
                log.error("%s%s", self.status, retry)
            return False
        self._status("")
        return True

    def _status(self, why: str) -> None:
        if why != self.status:
            self.status = why
            self.on_status(why)


#: The record fields a refusal names: its agent, endpoints, start time and protocol.
_NAMED = ("agent_id", "src_ip", "src_port", "dst_ip", "dst_port", "start_time", "protocol_type")
