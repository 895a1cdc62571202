"""A small real HTTP server speaking the /classify contract, for testing the agent's client side."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class ClassifyServer:
    """Answers POST /classify: S0/REJ connections are attacks (dos), the rest normal. Records for
    which `reject` is true get a 400 in the real server's format, naming them if `name_rejected`.
    The n-th request (from 1) for which `fail(n)` is true gets a 503 with Retry-After: 1; with
    `garbage`, every answer is a 200 that is not JSON; `delay` seconds pass before each answer.
    `attempts` holds (batch id, flows, status) of every request."""

    def __init__(
        self,
        port: int = 0,
        token: str | None = None,
        reject=None,
        name_rejected: bool = True,
        tls: tuple[str, str] | None = None,
        fail=None,
        garbage: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.received: list[dict] = []
        self.attempts: list[tuple[str | None, int, int]] = []
        self.token = token
        outer = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # /readyz, as the real server (benchmarks/live_veth.sh)
                if self.path == "/readyz":
                    return self._reply(200, {"status": "ready"})
                self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._reply(401, {"error": "unauthorized"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                flows = body["flows"]
                time.sleep(delay)
                with lock:
                    status = self._status(flows)
                    outer.attempts.append((self.headers.get("X-Desy-Batch"), len(flows), status))
                if status == 503:
                    return self._reply(503, {"error": "store busy"}, {"Retry-After": "1"})
                if garbage:
                    outer.received.extend(flows)
                    return self._reply(200, "<html>proxy error</html>")
                if status == 400:
                    bad = [i for i, f in enumerate(flows) if reject(f)]
                    detail = [
                        {"loc": ["flows", i, "src_bytes"], "msg": "bad", "type": "x"}
                        for i in bad[:20]
                    ]
                    return self._reply(
                        400,
                        {
                            "error": "bad",
                            "detail": detail if name_rejected else [],
                            "invalid_records": len(bad),
                        },
                    )
                outer.received.extend(flows)
                results = [
                    {"label": "attack", "attack_probability": 0.9, "category": "dos"}
                    if f["flag"] in ("S0", "REJ")
                    else {"label": "normal", "attack_probability": 0.1, "category": "normal"}
                    for f in flows
                ]
                self._reply(200, {"model_version": "7", "results": results})

            def _status(self, flows: list[dict]) -> int:
                if fail and fail(len(outer.attempts) + 1):
                    return 503
                return 400 if reject and any(reject(f) for f in flows) else 200

            def _reply(self, status: int, body: dict | str, headers: dict | None = None) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls:  # (certificate file, key file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # python -m tests.agent.classify_server PORT: serve until killed
    import sys

    with ClassifyServer(port=int(sys.argv[1])) as running:
        running.thread.join()
