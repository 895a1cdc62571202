"""ASGI middleware in front of the BentoML app: bearer-token auth and a body size limit on
/classify, and the served model version as a header on every response."""

from __future__ import annotations

import json
from hmac import compare_digest
from typing import Any

#: The model version this worker serves, set once the champion is loaded.
SERVED = {"version": ""}
PROTECTED = "/classify"


class Guard:
    """Health and metrics stay open; /classify needs `Authorization: Bearer <token>` when a token
    is configured, and a Content-Length of at most max_body bytes."""

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-model-version", SERVED["version"].encode())]
            await send(message)

        if scope["path"] == PROTECTED:
            refusal = self._refusal(dict(scope["headers"]))
            if refusal:
                await _reply(send_with_version, *refusal)
                return
        await self.app(scope, receive, send_with_version)

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        if self.expected and not compare_digest(headers.get(b"authorization", b""), self.expected):
            return 401, "missing or wrong bearer token"
        length = headers.get(b"content-length")
        if length is None:
            return 411, "Content-Length required"
        if not length.isdigit() or int(length) > self.max_body:
            return 413, f"body larger than {self.max_body} bytes"
        return None


async def _reply(send: Any, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
