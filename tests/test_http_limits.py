"""Request header limits on a real uvicorn server, with each of its HTTP/1.1 protocols."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from desy.http_limits import header_timeout, limit_headers
from tests.conftest import free_port


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(params=["h11", "httptools"])
def server(request):
    limit_headers(seconds=60.0)
    limit_headers(seconds=1.0)  # the last call's limits apply
    port = free_port()
    config = uvicorn.Config(hello, port=port, http=request.param, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def get(port: int, extra_headers: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + extra_headers + b"\r\n")
        return sock.recv(4096)


def test_headers_past_the_limit_get_431_and_a_closed_connection(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(100_000):  # 100 MB of header lines, never their end
                sock.sendall(b"X-Padding: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass  # closed by the server while sending
        answer = sock.recv(4096)
    # h11 refuses a little earlier by itself (400); both stop at about 16 KiB
    assert answer.split()[1] in (b"431", b"400"), answer[:200]
    assert get(server, b"X-Padding: " + b"a" * 8000 + b"\r\n").startswith(b"HTTP/1.1 200")


def test_headers_that_never_finish_are_cut_off_also_on_a_kept_alive_connection(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert sock.recv(4096) == b""
    assert 0.5 < time.monotonic() - started < 5


def test_a_body_of_many_packets_is_not_counted_as_headers(server):
    body = b"x" * 1_000_000
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1e9", "nan"])
def test_a_bad_header_timeout_is_refused_clearly(monkeypatch, raw):
    monkeypatch.setenv("DESY_HEADER_TIMEOUT", raw)
    with pytest.raises(ValueError, match="DESY_HEADER_TIMEOUT must be seconds"):
        header_timeout()


def test_the_header_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("DESY_HEADER_TIMEOUT", raising=False)
    assert header_timeout() == 10
    monkeypatch.setenv("DESY_HEADER_TIMEOUT", "2.5")
    assert header_timeout() == 2.5
