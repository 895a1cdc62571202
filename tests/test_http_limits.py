"""Request header and body limits on a real uvicorn server, with each of its HTTP/1.1 protocols."""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from serving.http_limits import limit_headers, raise_open_files
from tests.conftest import free_port

SEEN: list[bytes] = []  # the paths of the requests the app was given


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    SEEN.append(scope["raw_path"])
    while (await receive()).get("more_body"):  # the whole body, then the answer
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@contextmanager
def running(app, http: str) -> Iterator[int]:
    """A uvicorn server of app in a thread, with http's protocol; its port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, http=http, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(params=["h11", "httptools"])
def server(request):
    limit_headers(seconds=60.0, body_seconds=60.0)
    limit_headers(seconds=1.0, body_seconds=1.0)  # the last call's limits apply
    SEEN.clear()
    with running(hello, request.param) as port:
        yield port


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
    assert answer.split()[1] == b"431", answer[:200]
    assert get(server, b"X-Padding: " + b"a" * 8000 + b"\r\n").startswith(b"HTTP/1.1 200")


def test_headers_past_the_limit_in_one_write_never_reach_the_app(server):
    big = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100_000 + b"\r\n\r\n"
    for sent in (big, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n" + big):  # alone, pipelined
        with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
            sock.sendall(sent)
            answer = read_to_end(sock)
        # the last answer; a request before it in the same write may go unanswered (httptools:
        # closed at once). Read to the end: a connection reset would lose the answer.
        assert answer.rsplit(b"HTTP/1.1 ", 1)[1][:3] == b"431", answer[:300]
    assert SEEN == [b"/small"]
    assert get(server, b"X-Padding: " + b"a" * 8000 + b"\r\n").startswith(b"HTTP/1.1 200")


def read_to_end(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_httptools_answers_431_to_headers_past_the_limit_however_they_are_written():
    limit_headers(seconds=5.0, body_seconds=5.0)
    with running(hello, "httptools") as port:
        for size in (17_000, 100_000, 300_000):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * size + b"\r\n\r\n")
                assert read_to_end(sock).startswith(b"HTTP/1.1 431"), size


def test_a_body_that_never_finishes_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        started = time.monotonic()
        assert sock.recv(4096) == b""
    assert 0.5 < time.monotonic() - started < 5


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


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        assert raise_open_files() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
