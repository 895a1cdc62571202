"""Analysts' accounts and their dashboard sessions, kept in the alert store (so every dashboard
over one store knows the same analysts). A password is kept only as a salted scrypt hash; a
session only as the SHA-256 of its random cookie value, so neither a copy of the store nor a
leaked backup lets anyone sign in."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from functools import cache

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from alerts.tables import sessions, users

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
#: How long a sign-in lasts (an analyst's shift and then some).
SESSION_SECONDS = 12 * 3600
#: scrypt's cost (OWASP's minimum: N=2^17, r=8, p=1; 128 MiB and ~0.3 s per check here).
_N, _R, _P = 2**17, 8, 1
#: One password check at a time: each takes 128 MiB, and a flood of sign-ins must not take more.
_CHECKING = threading.Lock()


class AccountError(ValueError):
    """A bad user name or password, an account that exists already or does not."""


def hash_password(password: str) -> str:
    """The stored form of a password: scrypt$N$r$p$salt$hash (hex), with a new random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**28, dklen=32)


def password_matches(password: str, stored: str) -> bool:
    """Whether password is the one stored hashes (False for anything not such a hash)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = bytes.fromhex(digest)
        with _CHECKING:
            given = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return scheme == "scrypt" and secrets.compare_digest(given, expected)


@cache
def _nobody() -> str:
    """Checked when nobody has the name given, so a wrong name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def _new_password(given: str | None) -> str:
    """The password given (refused if short), or a new random one."""
    password = given or secrets.token_urlsafe(18)
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def add_user(engine: Engine, name: str, password: str | None = None) -> str:
    """Create an account; returns its password (a new random one unless given)."""
    if not USER_NAME.fullmatch(name):
        raise AccountError(f"user name {name!r}: letters, digits, '.', '_', '@', '-', at most 64")
    password = _new_password(password)
    row = {"name": name, "password_scrypt": hash_password(password), "created_at": time.time()}
    try:
        with engine.begin() as connection:
            connection.execute(insert(users), row)
    except IntegrityError:
        raise AccountError(f"user {name!r} exists already") from None
    return password


def set_password(engine: Engine, name: str, password: str | None = None) -> str:
    """A new password for an account (a random one unless given); its sessions end."""
    password = _new_password(password)
    with engine.begin() as connection:
        changed = connection.execute(
            update(users)
            .where(users.c.name == name)
            .values(password_scrypt=hash_password(password))
        ).rowcount
        connection.execute(delete(sessions).where(sessions.c.user_name == name))
    if not changed:
        raise AccountError(f"no user {name!r}")
    return password


def remove_user(engine: Engine, name: str) -> None:
    """Delete an account and end its sessions (what it did stays in the audit trail)."""
    with engine.begin() as connection:
        connection.execute(delete(sessions).where(sessions.c.user_name == name))
        if not connection.execute(delete(users).where(users.c.name == name)).rowcount:
            raise AccountError(f"no user {name!r}")


def list_users(engine: Engine) -> list[tuple[str, float]]:
    """(name, created at) of every account, by name."""
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(users.c.name, users.c.created_at).order_by(users.c.name)
            )
        ]


def any_users(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.scalar(select(func.count()).select_from(users)))


def check(engine: Engine, name: str, password: str) -> str | None:
    """The stored hash if name and password are an account's, else None (as slow when the
    name is nobody's). start_session takes it, so that no session starts for an account
    removed or given a new password meanwhile."""
    with engine.connect() as connection:
        stored = connection.scalar(select(users.c.password_scrypt).where(users.c.name == name))
    if stored is None:
        with _CHECKING:  # the first call hashes: one at a time, as checks
            decoy = _nobody()
        password_matches(password, decoy)
        return None
    return stored if password_matches(password, stored) else None


def device_token(name: str, checked: str) -> str:
    """What a browser that signed in as name (with the password hash checked) keeps to show it
    did (dashboard.sign_ins): keyed by the hash, which never leaves the store, so nobody else
    can make one, and a new password voids it."""
    return hmac.new(checked.encode(), f"desy-device|{name}".encode(), "sha256").hexdigest()


def trusted_device(engine: Engine, name: str, token: str) -> bool:
    """Whether token is the device token of the account name as its password is now."""
    with engine.connect() as connection:
        stored = connection.scalar(select(users.c.password_scrypt).where(users.c.name == name))
    return stored is not None and secrets.compare_digest(device_token(name, stored), token)


def _session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_session(engine: Engine, name: str, checked: str) -> str:
    """A new session for an account, signed in with the password hash checked: the cookie value
    (only its hash is kept). It lasts while the account keeps that hash: a new password or a
    removal ends it, even one that came between the check and now."""
    value, now = secrets.token_urlsafe(32), time.time()
    with engine.begin() as connection:
        connection.execute(delete(sessions).where(sessions.c.expires_at < now))
        connection.execute(
            insert(sessions),
            {
                "id_sha256": _session_hash(value),
                "user_name": name,
                "expires_at": now + SESSION_SECONDS,
                "password_scrypt": checked,
            },
        )
    return value


def session_user(engine: Engine, value: str) -> str | None:
    """The account a session cookie signs in, or None (unknown, expired, account removed or
    given a new password)."""
    signed_in = and_(
        sessions.c.user_name == users.c.name, sessions.c.password_scrypt == users.c.password_scrypt
    )
    with engine.connect() as connection:
        return connection.scalar(
            select(users.c.name)
            .join(sessions, signed_in)
            .where(
                sessions.c.id_sha256 == _session_hash(value), sessions.c.expires_at > time.time()
            )
        )


def end_session(engine: Engine, value: str) -> None:
    with engine.begin() as connection:
        connection.execute(delete(sessions).where(sessions.c.id_sha256 == _session_hash(value)))
