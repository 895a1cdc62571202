"""`desy users` and the start-up checks of `desy serve` and `desy dashboard`, as operators run them."""

from __future__ import annotations

import os
import sys

from alerts import accounts
from alerts.store import engine_for
from tests.conftest import run


def desy(*argv: str, stdin: str = "", env: dict | None = None):
    return run(
        [sys.executable, "-m", "desy.cli", *argv],
        120,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


def test_analysts_accounts_from_the_command_line(tmp_path):
    store = f"sqlite:///{tmp_path}/alerts.db"
    at = ("--store-url", store)
    made = desy("users", "add", "alice", *at)
    assert made.returncode == 0, made.stderr
    password = made.stdout.rsplit(" ", 1)[-1].strip()
    engine = engine_for(store)
    assert accounts.check(engine, "alice", password)
    again = desy("users", "add", "alice", *at)
    assert again.returncode == 2 and "exists already" in again.stderr
    empty = desy("users", "password", "alice", "--password-stdin", *at, stdin="")
    assert empty.returncode == 2 and "no password" in empty.stderr
    assert accounts.check(engine, "alice", password)  # unchanged
    short = desy("users", "password", "alice", "--password-stdin", *at, stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    chosen = desy("users", "password", "alice", "--password-stdin", *at, stdin="a long new one\n")
    assert chosen.returncode == 0 and "a long new one" not in chosen.stdout + chosen.stderr
    assert accounts.check(engine, "alice", "a long new one")
    assert desy("users", "add", "bob", *at).returncode == 0
    assert [line.split("\t")[0] for line in desy("users", "list", *at).stdout.splitlines()] == [
        "alice",
        "bob",
    ]
    assert desy("users", "remove", "bob", *at).returncode == 0
    missing = desy("users", "remove", "bob", *at)
    assert missing.returncode == 2 and "no user 'bob'" in missing.stderr


def test_a_bad_header_timeout_stops_the_servers_at_once(tmp_path):
    bad = {"DESY_HEADER_TIMEOUT": "ten"}
    for argv in (
        ("serve", "--no-store"),
        ("dashboard", "--store-url", f"sqlite:///{tmp_path}/a.db"),
    ):
        done = desy(*argv, env=bad)
        assert done.returncode == 2, done.stderr
        assert "DESY_HEADER_TIMEOUT must be seconds" in done.stderr
        assert "Traceback" not in done.stderr
