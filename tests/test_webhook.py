"""Webhook notifications of incidents, to a real HTTP server: a new incident once, then
rate-limited digests of its growth; retried, and counted when they cannot be sent."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

    def messages(self, kind: str) -> list[list[dict]]:
        return [body["incidents"] for body in self.bodies if body["kind"] == kind]


def test_a_new_incident_is_reported_once_then_its_growth_in_digests(tmp_path):
    """A spoofed flood written in 12 requests over 1.2 s: one message says the incident began,
    then digests (at most one per 0.5 s) tell its growth, never one message per alert group;
    the growth of an incident that began before is never reported as new."""
    url = f"sqlite:///{tmp_path}/alerts.db"
    store = ready_store(url)
    older = record(src="10.0.0.1") | {"dst_ip": "10.5.5.5"}
    store.write([Classified(time.time(), "6", older, ATTACK)])
    hook = Hook()
    notifier = Notifier(hook.url, interval=0.1, digest_interval=0.5)
    recorder = Recorder(Store(engine_for(url)), notifier=notifier)
    started = time.monotonic()
    for n in range(12):
        sources = [record(src=f"10.{n}.{i >> 8}.{i & 255}") for i in range(100)]
        recorder.submit("6", sources, [ATTACK] * 100)  # 100 spoofed sources -> 10.0.0.2
        recorder.submit("6", [record(src="10.0.0.9") | {"dst_ip": "10.5.5.5"}], [ATTACK])
        time.sleep(0.1)
    recorder.close()  # sends what is pending, the last digest included
    elapsed = time.monotonic() - started
    hook.server.shutdown()
    new = [incident for message in hook.messages("new") for incident in message]
    assert [(i["category"], i["src_ip"], i["dst_ip"]) for i in new] == [("dos", "", "10.0.0.2")]
    assert new[0]["sources"] == new[0]["added"] >= 100
    digests = hook.messages("digest")
    assert 1 <= len(digests) <= elapsed / 0.5 + 2
    flood = [i for message in digests for i in message if i["id"] == new[0]["id"]]
    assert sum(i["added"] for i in flood) + new[0]["added"] == 1200  # every alert told once
    assert flood[-1]["connections"] == 1200
    assert abs(flood[-1]["sources"] - 1200) < 120  # estimated past 1,024
    old = [i for message in digests for i in message if i["dst_ip"] == "10.5.5.5"]
    assert sum(i["added"] for i in old) == 12 and old[-1]["connections"] == 13
    assert all(body["source"] == "desy" for body in hook.bodies)


def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def incident(number: int, category: str, src: str) -> dict:
    return {"id": number, "category": category, "src_ip": src, "dst_ip": "10.0.0.2"} | {
        "connections": 1,
        "new": True,
        "added": 1,
    }


def test_a_failing_webhook_is_retried_then_counted():
    hook = Hook(failures=2)
    notifier = Notifier(hook.url, interval=0.1, attempts=3)
    notifier.submit([incident(1, "dos", "10.0.0.5")])
    until(lambda: hook.bodies)
    notifier.close()
    assert [(i["id"], i["src_ip"]) for m in hook.messages("new") for i in m] == [(1, "10.0.0.5")]
    assert hook.failures == 0  # the third try got through
    failed = []
    down = Notifier(
        f"http://127.0.0.1:{free_port()}/hook", interval=0.1, attempts=2, on_failed=failed.append
    )
    down.submit([incident(2, "probe", "10.0.0.6")])
    until(lambda: failed)
    down.close()
    assert failed == [1]
    hook.server.shutdown()
