"""Analysts' accounts and dashboard sessions on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from alerts import accounts
from alerts.accounts import AccountError
from alerts.database import engine_for, migrate
from alerts.tables import sessions, users


@pytest.fixture
def engine(store_url):
    engine = engine_for(store_url)
    migrate(engine)
    return engine


def test_an_account_signs_in_with_its_password_only(engine):
    assert not accounts.any_users(engine)
    password = accounts.add_user(engine, "alice")
    assert len(password) >= accounts.MIN_PASSWORD and accounts.any_users(engine)
    assert accounts.check(engine, "alice", password)
    assert not accounts.check(engine, "alice", password + "x")
    assert not accounts.check(engine, "bob", password)
    with engine.connect() as connection:
        stored = connection.scalar(select(users.c.password_scrypt))
    assert password not in stored and stored.startswith("scrypt$")
    assert accounts.list_users(engine)[0][0] == "alice"


@pytest.mark.parametrize(
    ("name", "password", "error"),
    [
        ("alice", "correct horse battery", "exists already"),
        ("", "correct horse battery", "user name"),
        ("al ice", "correct horse battery", "user name"),
        ("x" * 65, "correct horse battery", "user name"),
        ("bob", "short", "at least 12"),
    ],
)
def test_bad_accounts_are_refused(engine, name, password, error):
    accounts.add_user(engine, "alice", "correct horse battery")
    with pytest.raises(AccountError, match=error):
        accounts.add_user(engine, name, password)
    assert [n for n, _ in accounts.list_users(engine)] == ["alice"]


def test_sessions_end_on_sign_out_expiry_new_password_and_removal(engine, monkeypatch):
    accounts.add_user(engine, "alice", "correct horse battery")
    accounts.add_user(engine, "bob", "correct horse stapler")
    alices = accounts.check(engine, "alice", "correct horse battery")
    first, second = (accounts.start_session(engine, "alice", alices) for _ in range(2))
    bobs = accounts.start_session(
        engine, "bob", accounts.check(engine, "bob", "correct horse stapler")
    )
    with engine.connect() as connection:
        kept = set(connection.scalars(select(sessions.c.id_sha256)))
    assert first not in kept and len(kept) == 3  # only hashes are kept
    assert accounts.session_user(engine, first) == "alice"
    assert accounts.session_user(engine, "made-up") is None
    accounts.end_session(engine, first)
    assert accounts.session_user(engine, first) is None
    assert accounts.session_user(engine, second) == "alice"
    new = accounts.set_password(engine, "alice", "a new long password")
    assert new == "a new long password" and accounts.session_user(engine, second) is None
    assert accounts.check(engine, "alice", new)
    assert not accounts.check(engine, "alice", "correct horse battery")
    later = time.time() + accounts.SESSION_SECONDS + 1
    monkeypatch.setattr(accounts.time, "time", lambda: later)
    assert accounts.session_user(engine, bobs) is None  # expired
    monkeypatch.undo()
    assert accounts.session_user(engine, bobs) == "bob"
    accounts.remove_user(engine, "bob")
    assert accounts.session_user(engine, bobs) is None
    # a sign-in checked before its account was removed or given a new password signs in nobody
    late = accounts.start_session(engine, "alice", alices)
    assert accounts.session_user(engine, late) is None
    accounts.add_user(engine, "bob", "correct horse stapler")  # the name again: a new account
    assert accounts.session_user(engine, bobs) is None
    for missing in (
        lambda: accounts.remove_user(engine, "carol"),
        lambda: accounts.set_password(engine, "carol", "another long one"),
    ):
        with pytest.raises(AccountError, match="no user"):
            missing()


def test_a_stored_hash_that_is_not_scrypt_matches_nothing():
    real = accounts.hash_password("anything at all")
    assert accounts.password_matches("anything at all", real)
    for stored in ("", "plain", real.replace("scrypt", "md5"), "scrypt$x$8$1$00$00", real[:-2]):
        assert not accounts.password_matches("anything at all", stored)
