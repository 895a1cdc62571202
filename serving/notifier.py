"""Webhook notifications of incidents (alerts.incidents): a new incident is reported once, at
most `interval` seconds after it began (incidents begun meanwhile go together); its growth after
that goes in a digest, at most one every `digest_interval` seconds, with each grown incident's
counts and the alerts it got since it was last reported. Posts are retried with backoff; what
still cannot be sent after `attempts` tries is logged and counted, never silently lost.

Each message is {"source": "desy", "kind": "new" | "digest", "incidents": [incident, ...]}, an
incident with id, category, src_ip, dst_ip, service ("" where its kind leaves one out),
first_seen, last_seen, connections, sources, destinations, ports, peak_rate, max_probability,
agents, and added (alerts since the last message about it). Each server worker reports what it
wrote: with several, an incident's growth may come in one digest per worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("desy.serving.webhook")
MAX_PENDING = 1000  # incidents waiting at most (new ones, and grown ones); more are counted


class Notifier:
    """Posts new incidents, then digests of their growth, to a webhook."""

    def __init__(
        self,
        url: str,
        interval: float = 10.0,
        attempts: int = 5,
        timeout: float = 10.0,
        on_failed: Callable[[int], None] = lambda n: None,
        digest_interval: float = 300.0,
    ) -> None:
        self.url, self.interval, self.attempts = url, interval, attempts
        self.digest_interval = digest_interval
        self.on_failed = on_failed
        self.http = httpx.Client(timeout=timeout)
        self.new: dict[int, dict[str, Any]] = {}  # not reported yet
        self.grown: dict[int, dict[str, Any]] = {}  # reported, and grown since
        self.last_digest = float("-inf")
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="desy-webhook", daemon=True)
        self.thread.start()

    def submit(self, incidents: list[dict[str, Any]]) -> None:
        """What a write did to incidents (alerts.store.Written.incidents)."""
        dropped = 0
        with self.lock:
            for report in incidents:
                key = report["id"]
                waiting = self.new if report["new"] or key in self.new else self.grown
                if key not in waiting and len(self.new) + len(self.grown) >= MAX_PENDING:
                    dropped += 1
                    continue
                added = waiting[key]["added"] if key in waiting else 0
                waiting[key] = {k: v for k, v in report.items() if k != "new"}
                waiting[key]["added"] = added + report["added"]
        if dropped:
            self._failed(dropped, "too many incidents waiting")

    def close(self) -> None:
        """Send what is pending, digest included (one try), then stop."""
        self.stopping.set()
        self.thread.join(self.interval + 30)
        self.http.close()

    def _run(self) -> None:
        while True:
            stopping = self.stopping.wait(self.interval)
            attempts = 1 if stopping else self.attempts
            now = time.monotonic()
            with self.lock:
                new, self.new = list(self.new.values()), {}
                grown: list[dict[str, Any]] = []
                if self.grown and (stopping or now - self.last_digest >= self.digest_interval):
                    grown, self.grown = list(self.grown.values()), {}
                    self.last_digest = now
            if new:
                self._send("new", new, attempts)
            if grown:
                self._send("digest", grown, attempts)
            if stopping:
                return

    def _send(self, kind: str, incidents: list[dict[str, Any]], attempts: int) -> None:
        delay = 1.0
        message = {"source": "desy", "kind": kind, "incidents": incidents}
        for attempt in range(1, attempts + 1):
            try:
                self.http.post(self.url, json=message).raise_for_status()
                return
            except httpx.HTTPError as err:
                if attempt == attempts:
                    self._failed(
                        len(incidents), f"webhook {self.url} failed {attempts} times: {err}"
                    )
                    return
                log.warning("webhook %s failed (%s); retrying in %.0f s", self.url, err, delay)
                if self.stopping.wait(delay):
                    attempts = attempt + 1  # stopping: one last try
                delay = min(delay * 2, 60.0)

    def _failed(self, count: int, why: str) -> None:
        log.error("%s: %d incidents not notified", why, count)
        self.on_failed(count)
