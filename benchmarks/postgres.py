"""A throwaway PostgreSQL cluster (Debian's package) on a Unix socket, for tests and benchmarks.
As root it runs as the postgres user, which PostgreSQL requires."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NoPostgres(RuntimeError):
    """PostgreSQL is not installed."""


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise NoPostgres("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    return found[-1].parent


@contextmanager
def temporary_postgres(durable: bool = False) -> Iterator[str]:
    """Yield the URL of a new cluster's `postgres` database (trust auth); removed afterwards.
    durable=False turns fsync off (tests); benchmarks keep PostgreSQL's defaults."""
    bindir = postgres_bin()
    directory = Path(tempfile.mkdtemp(prefix="desy-pg-"))
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(directory, "postgres")
    data, log = directory / "data", directory / "log"
    subprocess.run(
        [*user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-k {directory} -c listen_addresses='' -c max_connections=200" + (
        "" if durable else " -c fsync=off"
    )
    subprocess.run(
        [*user, bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={directory}"
    finally:
        subprocess.run(
            [*user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)
