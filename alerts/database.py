"""The alert store's database: its URL, an engine for it, its schema (Alembic migrations), and
transactions one process at a time.

One code path over SQLite (the default: a file, WAL, safe with several server workers) and
PostgreSQL (`DESY_STORE_URL=postgresql://user@host/db`), through SQLAlchemy Core.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, Connection, Engine, bindparam, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Alembic's version table: its own name, so the store can share a database with MLflow's.
VERSION_TABLE = "desy_store_version"


def default_url() -> str:
    """DESY_STORE_URL, else a SQLite file under ~/.local/share/desy/ (XDG_DATA_HOME)."""
    if os.environ.get("DESY_STORE_URL"):
        return os.environ["DESY_STORE_URL"]
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{data / 'desy' / 'alerts.db'}"


def check_url(url: str) -> None:
    """ValueError unless url names a SQLite file or a PostgreSQL database."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as err:  # noqa: BLE001 (SQLAlchemy's ArgumentError, or a bad port, etc.)
        raise ValueError(f"not a database URL ({err})") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"the alert store is SQLite or PostgreSQL, not {backend}")


def engine_for(url: str) -> Engine:
    """An engine for a store URL: PostgreSQL through psycopg 3, connections given up after 10 s;
    SQLite in WAL mode (checkpointed every ~40 MB), waiting up to 30 s for another writer, its
    directory created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        # A server that does not answer fails a connection in 10 s (the operator's own
        # connect_timeout in the URL wins), instead of the system's minutes of TCP retries.
        timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        return create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint the WAL every 10,000 pages (~40 MB), not 1,000: alert floods write faster.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute("PRAGMA cache_size=-65536")  # KiB
        cursor.close()

    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the store's schema to the latest migration (or to revision), one
    process at a time: the server's workers all start by migrating the same store."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with one_at_a_time(engine, MIGRATION_LOCK) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


#: PostgreSQL advisory lock keys (any constants): of migrations, and of writing alerts and triage
#: (an alert's incident is read, then written).
MIGRATION_LOCK, WRITE_LOCK = 0x44655379, 0x44655380


@contextmanager
def one_at_a_time(engine: Engine, key: int) -> Iterator[Connection]:
    """A transaction no other process runs at the same time with the same key: PostgreSQL
    holds an advisory lock until it commits; SQLite (whose pysqlite runs a SELECT or a CREATE
    TABLE before the transaction's first write outside of it) an exclusive flock(2) on a lock
    file beside the database. Never on the database file itself: closing any descriptor of it
    drops the process's own SQLite (fcntl) locks, and the database gets corrupted."""
    database = engine.url.database
    on_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
    with open(f"{database}-desy.lock", "ab") if on_file else nullcontext() as handle:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
            yield connection


def positional_sql(statement: Any, dialect: Any) -> tuple[str, tuple[str, ...]]:
    """A statement's SQL for the driver's own executemany, with positional parameters (qmark on
    SQLite, format on psycopg), and the names of its parameters in order: SQLAlchemy's
    per-row parameter processing was a third of the store's write time."""
    positional = type(dialect)(paramstyle="qmark" if dialect.name == "sqlite" else "format")
    compiled = statement.compile(dialect=positional)
    return str(compiled), tuple(compiled.positiontup)


def binds(names: Iterable[str]) -> dict[str, BindParameter]:
    """A statement's values as parameters of the same names."""
    return {name: bindparam(name) for name in names}
