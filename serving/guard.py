"""ASGI middleware in front of the BentoML app.

Every path except OPEN_PATHS needs `Authorization: Bearer <token>` (when a token is configured)
and a JSON body of at most max_body bytes, counted as the bytes arrive whatever the headers say.
/readyz says why the model is not served yet, or why the alert store cannot be written; the
OpenAPI document declares the 400 body that /classify really sends; every response carries the
served model version. Where an agent captures travels in desy.records.SOURCE_HEADERS, and the
name it gave a batch in BATCH_HEADER (checked: 400 if malformed), for the alert store.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from hmac import compare_digest
from typing import Any
from urllib.parse import unquote

from alerts.store import UNKNOWN_SOURCE, Source
from desy.records import BATCH_HEADER, BATCH_ID_PATTERN, SOURCE_HEADERS
from serving.agent_tokens import TokenFile
from serving.schemas import BadRequest

#: The model version this worker serves once the champion is loaded, or why it does not yet;
#: why its alert store cannot be written ("" while it can, or without a store).
SERVED = {"version": "", "status": "loading the champion", "store": ""}
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json"})
#: The agent whose token the guard accepted for the request being served (with an agents file).
CURRENT_AGENT: ContextVar[str | None] = ContextVar("desy_current_agent", default=None)
#: The headers in which an agent says where it captures, as ASGI gives them.
_SOURCE_HEADERS = tuple(name.lower().encode() for name in SOURCE_HEADERS)
#: Where the agent of the request being served captures, as it said.
CURRENT_SOURCE: ContextVar[Source] = ContextVar("desy_current_source", default=UNKNOWN_SOURCE)
#: The batch id the agent named the request's records with (None: it named none).
CURRENT_BATCH: ContextVar[str | None] = ContextVar("desy_current_batch", default=None)
_BATCH_HEADER = BATCH_HEADER.lower().encode()
_BATCH_ID = re.compile(BATCH_ID_PATTERN.encode())


class Guard:
    """Token, content type and body size on protected paths; see the module docstring."""

    def __init__(
        self, app: Any, token: str | None, max_body: int, agents: TokenFile | None = None
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = max_body
        self.agents = agents

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-model-version", SERVED["version"].encode()),
                ]
            await send(message)

        path = scope["path"]
        if path == "/readyz" and not SERVED["version"]:
            await _reply(send_with_version, 503, {"ready": False, "status": SERVED["status"]})
        elif path == "/readyz" and SERVED["store"]:
            await _reply(send_with_version, 503, {"ready": False, "status": SERVED["store"]})
        elif path == "/docs.json":
            await self.app(scope, receive, _DocsRewriter(send_with_version))
        elif path in OPEN_PATHS:
            await self.app(scope, receive, send_with_version)
        else:
            await self._protected(scope, receive, send_with_version)

    async def _protected(self, scope: dict, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        if self.agents is not None:  # each agent its own token; its id travels in the scope
            authorization = headers.get(b"authorization", b"")
            token = (
                authorization[7:].decode("latin-1") if authorization.startswith(b"Bearer ") else ""
            )
            agent = self.agents.agent_for(token) if token else None
            if agent is None:
                await _reply(send, 401, {"error": "missing, unknown or disabled agent token"})
                return
            CURRENT_AGENT.set(agent)  # this request's context only (copied into the worker thread)
        elif self.expected and not compare_digest(
            headers.get(b"authorization", b""), self.expected
        ):
            await _reply(send, 401, {"error": "missing or wrong bearer token"})
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if any(name in headers for name in _SOURCE_HEADERS):
            CURRENT_SOURCE.set(Source(*(_said(headers.get(name, b"")) for name in _SOURCE_HEADERS)))
        if (batch := headers.get(_BATCH_HEADER)) is not None:
            if not _BATCH_ID.fullmatch(batch):
                error = f"{BATCH_HEADER} must match {BATCH_ID_PATTERN}"
                await _reply(send, 400, {"error": error})
                return
            CURRENT_BATCH.set(batch.decode())
        media_type = (
            headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        )
        if media_type != b"application/json":
            await _reply(send, 415, {"error": "the body must be application/json"})
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(send, 413, {"error": f"body larger than {self.max_body} bytes"})
            return
        body = await _read_body(receive, self.max_body)
        if body is None:
            await _reply(send, 413, {"error": f"body larger than {self.max_body} bytes"})
            return
        await self.app(scope, _replay(body, receive), send)


def _said(value: bytes, limit: int = 256) -> str:
    """A header an agent sent, decoded: printable characters only, at most limit of them."""
    text = unquote(value.decode("latin-1"), errors="replace")
    return "".join(char for char in text if char.isprintable())[:limit]


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None as soon as more than limit bytes have arrived."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive callable that gives the app the body already read, then the real events."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _DocsRewriter:
    """Declares the 400 body /classify sends (BentoML's default says `detail` is a string) and
    that a request body is required."""

    def __init__(self, send: Any) -> None:
        self.send, self.start, self.body = send, None, bytearray()

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        body = bytes(self.body)
        if self.start["status"] == 200:
            doc = json.loads(body)
            doc.setdefault("components", {}).setdefault("schemas", {})["InvalidArgument"] = (
                BadRequest.model_json_schema()
            )
            for operations in doc.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and "requestBody" in operation:
                        operation["requestBody"]["required"] = True
            body = json.dumps(doc).encode()
        headers = [
            (k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"
        ]
        await self.send(
            {**self.start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        )
        await self.send({"type": "http.response.body", "body": body})


async def _reply(send: Any, status: int, content: dict) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
