"""Recording verdicts in the alert store from a background thread, off /classify's path.

A request only appends its batch to a bounded queue. The writer thread stores what is queued
every `flush_interval` seconds in one transaction, creates or upgrades the schema first, retries
with backoff while the store is down or locked, and purges alerts older than the retention
once a minute. When the queue is full (the store is absent or slower than the traffic), the
verdicts that do not fit are counted and said in the log: never lost silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from alerts.store import UNKNOWN_SOURCE, Classified, Source, Store, migrate
from serving.notifier import Notifier

log = logging.getLogger("desy.serving.store")


class Recorder:
    """Queues classified batches and writes them to the store from its own thread."""

    def __init__(
        self,
        store: Store,
        keep_normal: bool = False,
        max_pending: int = 200_000,
        flush_interval: float = 0.5,
        retention_days: float = 30.0,
        max_bytes: int = 1 << 30,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store, self.keep_normal = store, keep_normal
        self.max_pending, self.flush_interval = max_pending, flush_interval
        self.retention, self.max_bytes = retention_days * 86400, max_bytes
        self.on_written, self.on_dropped = on_written, on_dropped
        self.notifier = notifier
        self.queue: deque[tuple[float, str, Sequence[Any], Sequence[Any], Source]] = deque()
        self.pending = 0  # verdicts queued
        self.dropped = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="desy-store-writer", daemon=True)
        self.thread.start()

    def submit(
        self,
        model_version: str,
        records: Sequence[Any],
        verdicts: Sequence[Any],
        source: Source = UNKNOWN_SOURCE,
    ) -> None:
        """Queue a classified batch (records: mappings) and where its agent captures. Never
        blocks; a batch that does not fit is dropped and counted."""
        with self.lock:
            if self.pending + len(verdicts) > self.max_pending:
                self.dropped += len(verdicts)
                dropped = self.dropped
            else:
                self.pending += len(verdicts)
                self.queue.append((time.time(), model_version, records, verdicts, source))
                return
        self.on_dropped(len(verdicts))
        if dropped == len(verdicts) or dropped % 10_000 < len(
            verdicts
        ):  # the first drop, then every ~10k
            log.error(
                "alert store queue full (%d verdicts waiting): %d verdicts not stored so far",
                self.max_pending,
                dropped,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (within timeout), then stop the thread."""
        self.stopping.set()
        self.thread.join(timeout)
        if self.notifier is not None:
            self.notifier.close()

    def _run(self) -> None:
        self._until_ready(lambda: migrate(self.store.engine), "cannot prepare the alert store")
        last_purge = 0.0
        while True:
            stopping = self.stopping.wait(self.flush_interval)
            batch = self._take()
            if batch and not self._until_ready(
                partial(self._write, batch), "cannot write to the alert store"
            ):
                self.on_dropped(len(batch))
            if stopping:
                return
            if time.monotonic() - last_purge >= 60:
                last_purge = time.monotonic()
                self._until_ready(self._retain, "cannot purge the alert store")

    def _retain(self) -> None:
        """Delete alerts past the retention age, then (SQLite) the oldest past the size limit."""
        self.store.purge(time.time() - self.retention)
        if deleted := self.store.shrink(self.max_bytes):
            log.warning(
                "alert store over %d MiB: %d oldest alerts deleted", self.max_bytes >> 20, deleted
            )

    def _take(self) -> list[Classified]:
        with self.lock:
            items, self.queue = self.queue, deque()
            self.pending = 0
        return [
            Classified(at, version, record, verdict, source)
            for at, version, records, verdicts, source in items
            for record, verdict in zip(records, verdicts, strict=True)
        ]

    def _write(self, batch: list[Classified]) -> None:
        new_groups: list[dict[str, Any]] | None = [] if self.notifier else None
        self.store.write(batch, self.keep_normal, new_groups)
        if new_groups:
            self.notifier.submit(new_groups)
        self.on_written(len(batch))

    def _until_ready(self, action: Callable[[], Any], what: str) -> bool:
        """Run action, retrying with backoff (0.5 s doubling to 30 s); False if the recorder
        stopped before it succeeded."""
        delay = 0.5
        while True:
            try:
                action()
                return True
            except Exception as err:  # noqa: BLE001 (the store down, locked or refusing: retry)
                if self.stopping.is_set():
                    log.error("stopping: %s: %s", what, err)
                    return False
                log.error("%s (retrying in %.1f s): %s", what, delay, err)
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
