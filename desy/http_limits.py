"""Limits on a connection's request headers, for the servers uvicorn runs (model server, dashboard).

uvicorn waits for request headers for ever, and its httptools protocol buffers them without
bound (a client sent 2.9 GB of header lines in 5 s). Patched into both of its HTTP/1.1 protocols
(h11's and httptools'): a connection whose request headers are not complete `seconds` after it
opened, or after its previous response, is closed; one whose headers outgrow `max_bytes` is
answered 431 and closed.
"""

from __future__ import annotations

import os
from typing import Any

#: As h11's own limit; nginx allows 32 KiB. DeSy's clients send a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
_MESSAGE = b"request headers too large\n"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


def header_timeout() -> float:
    """Seconds a connection may take to send its request headers: DESY_HEADER_TIMEOUT, else 10."""
    raw = os.environ.get("DESY_HEADER_TIMEOUT", "10")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 3600:
        raise ValueError(f"DESY_HEADER_TIMEOUT must be seconds between 0 and 3600, not {raw!r}")
    return seconds


def limit_headers(seconds: float, max_bytes: int = MAX_HEADER_BYTES) -> None:
    """Patch uvicorn's HTTP/1.1 protocols; a later call replaces the limits of an earlier one."""
    for protocol in _protocols():
        _patch(protocol, seconds, max_bytes)


def _protocols() -> list[type]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn uses h11
        return [H11Protocol]
    return [H11Protocol, HttpToolsProtocol]


def _patch(protocol_class: type, seconds: float, max_bytes: int) -> None:
    if "desy_originals" not in protocol_class.__dict__:
        protocol_class.desy_originals = (
            protocol_class.connection_made,
            protocol_class.data_received,
            protocol_class.on_response_complete,
        )
    made, received, completed = protocol_class.desy_originals

    def await_headers(protocol: Any) -> None:
        """From now, the next request's headers are awaited: a request starts a new cycle once
        its headers are complete; until then, count bytes and time."""
        cycle = protocol.cycle
        if cycle is not None and not cycle.response_complete:
            return  # a pipelined request's headers are in already
        protocol.desy_awaited = [cycle, 0]

        def expire() -> None:
            if protocol.cycle is cycle and not protocol.transport.is_closing():
                protocol.transport.close()

        protocol.loop.call_later(seconds, expire)

    def connection_made(self: Any, transport: Any) -> None:
        made(self, transport)
        await_headers(self)

    def data_received(self: Any, data: bytes) -> None:
        received(self, data)
        awaited = self.desy_awaited
        if self.cycle is awaited[0] and not self.transport.is_closing():
            awaited[1] += len(data)
            if awaited[1] > max_bytes:
                self.transport.write(TOO_LARGE)
                self.transport.close()

    def on_response_complete(self: Any) -> None:
        completed(self)
        if not self.transport.is_closing():
            await_headers(self)

    protocol_class.connection_made = connection_made
    protocol_class.data_received = data_received
    protocol_class.on_response_complete = on_response_complete
