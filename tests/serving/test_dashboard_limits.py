"""A real dashboard's limits on requests, driven through raw sockets: headers too large in one
write, bodies that never finish, more slow clients than the soft limit of open files."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from tests.serving.test_dashboard_accounts import running_dashboard, store_with_alice


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def test_headers_too_large_in_one_write_get_431(tmp_path):
    store, _ = store_with_alice(tmp_path)
    with running_dashboard(store, tmp_path / "dashboard.log") as url:
        with socket.create_connection(address(url), timeout=10) as sock:
            padding = b"X-Padding: " + b"a" * 100_000 + b"\r\n"
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 431")
        assert httpx.get(f"{url}/login", headers={"X-Padding": "a" * 8000}).status_code == 200


def slow_sign_ins(url: str, count: int) -> list[socket.socket]:
    """count connections that each send a sign-in's headers and the start of its body."""
    head = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address(url), timeout=60)
        sock.sendall(head + b"Content-Length: 1000\r\n\r\nname=alice&password=")
        socks.append(sock)
    return socks


def closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (waits for it, up to the socket's timeout)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def test_slow_bodies_are_cut_off_and_free_their_descriptors(tmp_path):
    """More slow sign-ins than the dashboard has descriptors (64, which it cannot raise): each
    is closed when its body is late, and then real requests are served."""
    store, _ = store_with_alice(tmp_path)
    env = {"DESY_BODY_TIMEOUT": "1"}
    with running_dashboard(store, tmp_path / "dashboard.log", env=env, open_files=(64, 64)) as url:
        assert all(closed(sock) for sock in slow_sign_ins(url, 100))
        assert httpx.get(f"{url}/login", timeout=10).status_code == 200


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one(tmp_path):
    """Slow clients past the soft limit (64) do not keep real requests out: the dashboard raised
    it to the hard one (4096) at start."""
    store, _ = store_with_alice(tmp_path)
    env = {"DESY_HEADER_TIMEOUT": "120", "DESY_BODY_TIMEOUT": "120"}
    log = tmp_path / "dashboard.log"
    with running_dashboard(store, log, env=env, open_files=(64, 4096)) as url:
        held = slow_sign_ins(url, 100)
        time.sleep(1)  # all accepted
        assert httpx.get(f"{url}/login", timeout=10).status_code == 200
        for sock in held:
            sock.close()
