"""`desy serve` as a child process: start it on a free port and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from commands.project import PROJECT


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, store_url: str) -> subprocess.Popen:
    """`desy serve` on the loopback interface, without a token, recording alerts in store_url, in
    a session of its own."""
    env = dict(os.environ)
    env.pop("DESY_API_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "commands", "serve", "--port", str(port), "--store-url", store_url],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Return once url/readyz answers 200; raise if the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("model server exited:\n" + proc.stderr.read().decode()[-3000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"model server not ready after {timeout:.0f} s")
