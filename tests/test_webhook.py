"""Webhook notifications of new alert groups, to a real HTTP server: only groups new to the
store (not suppressed), batched by the rate limit, retried, and counted when they cannot be sent."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alerts import suppression
from alerts.database import engine_for
from alerts.store import Classified, Store
from serving.notifier import Notifier
from serving.recorder import Recorder
from tests.conftest import free_port
from tests.test_store import ATTACK, ready_store, record


class Hook:
    """A webhook receiver that fails its first `failures` requests with a 503."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict] = []
        self.failures = failures
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.failures:
                    hook.failures -= 1
                    self.send_response(503)
                else:
                    hook.bodies.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def groups(self) -> list[tuple]:
        return [
            (g["category"], g["src_ip"], g["alerts"])
            for body in self.bodies
            for g in body["groups"]
        ]


def test_new_groups_are_notified_once_batched_and_suppressed_ones_not(tmp_path):
    url = f"sqlite:///{tmp_path}/alerts.db"
    store = ready_store(url)
    store.write([Classified(1.0, "6", record(src="10.0.0.1"), ATTACK)])  # an old group
    suppression.add_suppression(store.engine, "carol", "lab scanner", src_cidr="10.0.0.9/32")
    hook = Hook()
    recorder = Recorder(Store(engine_for(url)), notifier=Notifier(hook.url, interval=0.2))
    for src in ("10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.2", "10.0.0.3"):
        recorder.submit("6", [record(src=src)] * 2, [ATTACK] * 2)
    recorder.close()
    hook.server.shutdown()
    notified = sorted(hook.groups())
    assert [(c, src) for c, src, _ in notified] == [
        ("dos", "10.0.0.2"),
        ("dos", "10.0.0.3"),
    ]  # each new group once
    assert all(alerts >= 2 for _, _, alerts in notified)
    assert len(hook.bodies) <= 2 and all(body["source"] == "desy" for body in hook.bodies)


def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_failing_webhook_is_retried_then_counted():
    hook = Hook(failures=2)
    notifier = Notifier(hook.url, interval=0.1, attempts=3)
    notifier.submit(
        [
            {
                "category": "dos",
                "src_ip": "10.0.0.5",
                "dst_ip": "10.0.0.2",
                "alerts": 1,
                "max_probability": 0.9,
            }
        ]
    )
    until(lambda: hook.bodies)
    notifier.close()
    assert (
        hook.groups() == [("dos", "10.0.0.5", 1)] and hook.failures == 0
    )  # the third try got through
    failed = []
    down = Notifier(
        f"http://127.0.0.1:{free_port()}/hook", interval=0.1, attempts=2, on_failed=failed.append
    )
    down.submit(
        [
            {
                "category": "probe",
                "src_ip": "10.0.0.6",
                "dst_ip": "10.0.0.2",
                "alerts": 3,
                "max_probability": 0.8,
            }
        ]
    )
    until(lambda: failed)
    down.close()
    assert failed == [1]
    hook.server.shutdown()
