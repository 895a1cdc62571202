"""Limits on a connection's requests, for the servers uvicorn runs (model server, dashboard).

uvicorn waits for request headers and bodies for ever, and its httptools protocol buffers
headers without bound (a client sent 2.9 GB of header lines in 5 s). Patched into both of its
HTTP/1.1 protocols (h11's and httptools'):

- a connection whose request headers are not complete `seconds` after it opened, or after its
  previous response, is closed;
- a request whose headers outgrow `max_bytes` is answered 431 and its connection closed before
  the app sees it: counted while they arrive (over as many reads as they take) and again once
  parsed (headers that came in one write, or pipelined behind another request);
- a request whose body is not complete `body_seconds` after its headers is closed (slow bodies
  held the dashboard's descriptors for ever).

Descriptors: each slow client holds one until its time is up, so limit_headers also raises the
process's soft limit of open files to its hard limit (as nginx's worker_rlimit_nofile): 1,030
slow clients exhausted a soft limit of 1,024; the hard one (1,048,576 in Docker's default) is
what the host allows.

The time limits are settings (serving/settings.py: DESY_HEADER_TIMEOUT, DESY_BODY_TIMEOUT).
"""

from __future__ import annotations

import resource
from typing import Any

#: As h11's own limit; nginx allows 32 KiB. DeSy's clients send a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
#: How long a refused connection is read from (and what it sends dropped) before it is closed.
LINGER_SECONDS = 2.0
_MESSAGE = b"request headers too large\n"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


def raise_open_files() -> int:
    """Raise the soft limit of open files to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):  # not allowed here: keep the soft limit
            return soft
        return hard
    return soft


def limit_headers(seconds: float, body_seconds: float, max_bytes: int = MAX_HEADER_BYTES) -> None:
    """Patch uvicorn's HTTP/1.1 protocols (a later call replaces the limits of an earlier one)
    and raise the soft limit of open files."""
    for protocol in _protocols():
        _patch(protocol, seconds, max_bytes, body_seconds)
    raise_open_files()


def _protocols() -> list[type]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn uses h11
        return [H11Protocol]
    return [H11Protocol, HttpToolsProtocol]


def _header_bytes(target: bytes, headers: Any) -> int:
    """About the size of a request's parsed headers as sent."""
    return len(target) + sum(len(name) + len(value) + 4 for name, value in headers)


def _refuse(protocol: Any) -> None:
    """Answer 431 and close, once the client has had LINGER_SECONDS to read it: until then what
    it still sends is read and dropped (closing with bytes unread resets the connection, and
    the client may lose the answer). At once if an earlier request on the connection is still
    being answered: its answer would follow the 431."""
    transport = protocol.transport
    if transport.is_closing() or protocol.desy_refused:
        return
    protocol.desy_refused = True
    transport.write(TOO_LARGE)
    if protocol.cycle is None or protocol.cycle.response_complete:
        protocol.loop.call_later(LINGER_SECONDS, transport.close)
    else:
        transport.close()


def _patch(protocol_class: type, seconds: float, max_bytes: int, body_seconds: float) -> None:
    if "desy_originals" not in protocol_class.__dict__:
        protocol_class.desy_originals = {
            name: protocol_class.__dict__[name]
            for name in (
                "connection_made",
                "data_received",
                "on_response_complete",
                "on_headers_complete",
                "send_400_response",
            )
            if name in protocol_class.__dict__
        }
    originals = protocol_class.desy_originals

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

    def await_body(protocol: Any, before: Any) -> None:
        """If a request started since `before`, close its connection should its body not be in
        within body_seconds."""
        cycle = protocol.cycle
        if cycle is None or cycle is before or not cycle.more_body:
            return

        def expire() -> None:
            if protocol.cycle is cycle and cycle.more_body:
                protocol.transport.close()

        protocol.loop.call_later(body_seconds, expire)

    def connection_made(self: Any, transport: Any) -> None:
        self.desy_refused = False
        originals["connection_made"](self, transport)
        await_headers(self)
        if "on_headers_complete" not in originals:  # h11: the parser's events are read here
            _check_parsed_requests(self, max_bytes)

    def data_received(self: Any, data: bytes) -> None:
        if self.desy_refused:
            return
        before = self.cycle
        originals["data_received"](self, data)
        awaited, cycle = self.desy_awaited, self.cycle
        # Bytes still arriving for a request answered early (a 413) are its body, not headers.
        if cycle is awaited[0] and not self.transport.is_closing() and not _in_body(cycle):
            awaited[1] += len(data)
            if awaited[1] > max_bytes:
                _refuse(self)
        await_body(self, before)

    def on_response_complete(self: Any) -> None:
        before = self.cycle
        originals["on_response_complete"](self)
        if not self.transport.is_closing():
            await_headers(self)
            await_body(self, before)  # h11 reads a pipelined request now

    patched: dict[str, Any] = {
        "connection_made": connection_made,
        "data_received": data_received,
        "on_response_complete": on_response_complete,
    }
    if "on_headers_complete" in originals:  # httptools: its parser calls back per request

        def on_headers_complete(self: Any) -> None:
            if _header_bytes(self.url, self.headers) > max_bytes:
                _refuse(self)
                raise ValueError("request headers too large")  # the parser stops here
            originals["on_headers_complete"](self)

        def send_400_response(self: Any, msg: str) -> None:
            if not self.desy_refused:  # not after a 431
                originals["send_400_response"](self, msg)

        patched |= {
            "on_headers_complete": on_headers_complete,
            "send_400_response": send_400_response,
        }
    for name, method in patched.items():
        setattr(protocol_class, name, method)


def _in_body(cycle: Any) -> bool:
    """Whether the request of cycle is still receiving its body."""
    return cycle is not None and cycle.more_body


def _check_parsed_requests(protocol: Any, max_bytes: int) -> None:
    """h11: refuse (431) a request whose parsed headers outgrow max_bytes, or whose unparsed ones
    outgrow h11's own limit; nothing more is read from its connection."""
    import h11

    connection = protocol.conn
    next_event = connection.next_event

    def checked() -> Any:
        if protocol.desy_refused:
            return h11.NEED_DATA
        try:
            event = next_event()
        except h11.RemoteProtocolError as error:
            if error.error_status_hint != 431:
                raise
            # h11's own limit on unparsed bytes: uvicorn would answer 400 and close with the rest
            # unread, which resets the connection before the client reads the answer
            _refuse(protocol)
            return h11.NEED_DATA
        if (
            isinstance(event, h11.Request)
            and _header_bytes(event.target, event.headers) > max_bytes
        ):
            _refuse(protocol)
            return h11.NEED_DATA
        return event

    connection.next_event = checked
