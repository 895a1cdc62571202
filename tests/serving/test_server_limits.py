"""A real model server's limits on requests, through raw sockets: headers too large in one
write are refused before the app (431), a body that never finishes is cut off."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import free_port
from tests.serving.conftest import TOKEN, start_server, stop_server, wait_ready


@pytest.fixture
def strict_server(model_store, monkeypatch):
    """The port of a server whose request bodies must arrive within 1 s."""
    monkeypatch.setenv("DESY_BODY_TIMEOUT", "1")
    port = free_port()
    proc = start_server(model_store[0], TOKEN, port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        stop_server(proc)


def test_headers_too_large_in_one_write_get_431(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server), timeout=10) as sock:
        padding = b"X-Padding: " + b"a" * 100_000 + b"\r\n"
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


def test_a_body_that_never_finishes_is_cut_off(strict_server):
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", strict_server), timeout=30) as sock:
        sock.sendall(head + auth + b'Content-Length: 1000\r\n\r\n{"flows": [')
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass
