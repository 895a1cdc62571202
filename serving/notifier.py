"""Webhook notifications of new alert groups: a JSON POST at most every `interval` seconds
(groups found meanwhile go together), retried with backoff; what still cannot be sent after
`attempts` tries is logged and counted, never silently lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("desy.serving.webhook")
MAX_PENDING = 1000  # groups waiting at most; more are counted as not sent


class Notifier:
    """Posts {"source": "desy", "groups": [{category, src_ip, dst_ip, alerts, max_probability}, ...]}."""

    def __init__(
        self,
        url: str,
        interval: float = 10.0,
        attempts: int = 5,
        timeout: float = 10.0,
        on_failed: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.url, self.interval, self.attempts = url, interval, attempts
        self.on_failed = on_failed
        self.http = httpx.Client(timeout=timeout)
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="desy-webhook", daemon=True)
        self.thread.start()

    def submit(self, groups: list[dict[str, Any]]) -> None:
        with self.lock:
            room = MAX_PENDING - len(self.pending)
            self.pending.extend(groups[:room])
        if len(groups) > room:
            self._failed(len(groups) - max(room, 0), "too many new alert groups waiting")

    def close(self) -> None:
        """Send what is pending (one try), then stop."""
        self.stopping.set()
        self.thread.join(self.interval + 30)
        self.http.close()

    def _run(self) -> None:
        while True:
            stopping = self.stopping.wait(self.interval)
            with self.lock:
                groups, self.pending = self.pending, []
            if groups:
                self._send(groups, attempts=1 if stopping else self.attempts)
            if stopping:
                return

    def _send(self, groups: list[dict[str, Any]], attempts: int) -> None:
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                self.http.post(
                    self.url, json={"source": "desy", "groups": groups}
                ).raise_for_status()
                return
            except httpx.HTTPError as err:
                if attempt == attempts:
                    self._failed(len(groups), f"webhook {self.url} failed {attempts} times: {err}")
                    return
                log.warning("webhook %s failed (%s); retrying in %.0f s", self.url, err, delay)
                if self.stopping.wait(delay):
                    attempts = attempt + 1  # stopping: one last try
                delay = min(delay * 2, 60.0)

    def _failed(self, count: int, why: str) -> None:
        log.error("%s: %d new alert groups not notified", why, count)
        self.on_failed(count)
