"""`desy users` and the start-up checks of `desy serve` and `desy dashboard`, as operators run them:
a store that cannot be opened is one line naming it (never its password), exit 1."""

from __future__ import annotations

import os
import sys

from alerts import accounts
from alerts.database import engine_for
from tests.conftest import free_port, run


def desy(*argv: str, stdin: str = "", env: dict | None = None):
    return run(
        [sys.executable, "-m", "commands", *argv],
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


STORE_COMMANDS = [
    ("users", "add", "alice"),
    ("users", "password", "alice"),
    ("users", "remove", "alice"),
    ("users", "list"),
    ("feedback", "export"),
    ("dashboard",),
]


def one_line_error(done, *expected: str) -> None:
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: alert store ") and all(part in line for part in expected)


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path):
    port = free_port()  # nothing listens there
    url = f"postgresql://bob:s3cret-pw@127.0.0.1:{port}/desy"
    out = tmp_path / "feedback.csv"
    for argv in STORE_COMMANDS:
        extra = ("--out", str(out)) if argv[0] == "feedback" else ()
        done = desy(*argv, *extra, "--store-url", url)
        one_line_error(done, f"'desy' on 127.0.0.1:{port}", "Connection refused")
        assert "s3cret-pw" not in done.stdout + done.stderr
    assert not out.exists()


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path, postgres_url):
    missing = postgres_url.replace("/postgres?", "/no_such_db?")
    for argv in (("users", "list"), ("dashboard",)):
        one_line_error(desy(*argv, "--store-url", missing), "'no_such_db'", "does not exist")
    (tmp_path / "junk.db").write_text("not a database")
    for store in (tmp_path / "junk.db", tmp_path / "junk.db" / "a.db"):
        one_line_error(desy("users", "list", "--store-url", f"sqlite:///{store}"), str(store))


def test_feedback_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "feedback.csv"
    store = f"sqlite:///{tmp_path}/alerts.db"
    done = desy("feedback", "export", "--out", str(out), "--store-url", store)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write {out}: ") and "File exists" in line
