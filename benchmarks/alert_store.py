"""The dashboard's inbox and overview over a million stored alerts, on SQLite and PostgreSQL.

Fills a new store with N generated alerts (spread over 30 days, 5,000 sources, 200 destinations,
40 agents, the four attack categories) through the same Store.write the server uses (then, on
PostgreSQL, ANALYZE: the planner statistics autovacuum keeps for a store that grew), then times
the dashboard's pages in-process (FastAPI's TestClient: server time, no network), 20 requests
each, and prints the median and p95. Target: p95 <= 300 ms.

    uv run python benchmarks/alert_store.py --alerts 1000000            # SQLite and PostgreSQL

Every alert written falls into an incident (alerts.incidents). The uniform traffic above is
their worst case: spread evenly over 30 days, almost every alert is an incident of its own (a
destination gets a dos alert every 20 minutes, past the 15-minute quiet period; 15,000
sources). `--traffic attacks` writes what a server meets instead: requests of 500 alerts a
second from floods (spoofed sources) against 3 victims, 20 scanners and 50 password guessers.
`--writes-only` skips the pages. Compare write speeds with the same command on the commit
before incidents (same machine, nothing else running).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from alerts.database import engine_for, migrate
from alerts.store import Classified, Store
from benchmarks.postgres import temporary_postgres
from dashboard.app import create_app
from desy.schema import FEATURE_NAMES

PAGES = (
    "/inbox",
    "/inbox?status=any&last=all",
    "/inbox?src=10.1.0.0/16&last=7d",
    "/overview",
    "/overview?last=all",
    "/groups",
    "/groups?status=any&last=all",
    "/incident?id=1&last=all",
    "/group?category=dos&src_ip=10.0.0.1&dst_ip=192.168.0.7",
    "/group?category=dos&src_ip=10.0.0.1&dst_ip=192.168.0.7&status=any&last=all",
)
CATEGORIES = ("dos", "dos", "dos", "probe", "probe", "r2l", "u2r")


def fill(store: Store, alerts: int, seed: int = 1) -> float:
    """Write alerts in batches of 10,000; returns alerts per second."""
    rng = random.Random(seed)
    now = time.time()
    started = time.perf_counter()
    for start in range(0, alerts, 10_000):
        batch = []
        for _ in range(min(10_000, alerts - start)):
            features = dict.fromkeys(FEATURE_NAMES, 0)
            features.update(
                protocol_type="tcp",
                service=rng.choice(("http", "private", "ftp", "ssh", "other")),
                flag=rng.choice(("S0", "REJ", "SF")),
                count=rng.randrange(512),
            )
            source = rng.randrange(5000)
            record = features | {
                "src_ip": f"10.{source // 250}.{source % 250}.{rng.randrange(1, 4)}",
                "src_port": rng.randrange(1024, 65535),
                "dst_ip": f"192.168.0.{rng.randrange(200)}",
                "dst_port": 80,
                "start_time": now,
                "end_time": now,
                "agent_id": f"agent-{rng.randrange(40)}",
            }
            verdict = {
                "label": "attack",
                "attack_probability": round(rng.uniform(0.2, 1), 3),
                "category": rng.choice(CATEGORIES),
            }
            received = now - 30 * 86400 * (
                1 - (start + len(batch)) / alerts
            )  # in time order, as served
            batch.append(Classified(received, "6", record, verdict))
        store.write(batch)
    return alerts / (time.perf_counter() - started)


def fill_attacks(store: Store, alerts: int, seed: int = 1) -> float:
    """Write alerts as a server under attack stores them: one request of 500 a second (each a
    mix of floods from spoofed sources, scans and guessing); returns alerts per second."""
    rng = random.Random(seed)
    start_at = time.time() - alerts / 500
    started = time.perf_counter()
    batch: list[Classified] = []
    for n in range(alerts):
        at = start_at + n // 500
        kind = rng.random()
        features = dict.fromkeys(FEATURE_NAMES, 0)
        features.update(protocol_type="tcp", service="http", flag="S0", count=rng.randrange(512))
        if kind < 0.7:  # a flood: random sources, one of 3 victims
            category, src = (
                "dos",
                f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.1",
            )
            dst, port = f"192.168.0.{rng.randrange(3)}", 80
        elif kind < 0.9:  # a scan: one of 20 sources, many ports of a few hosts
            category, src = "probe", f"10.5.0.{rng.randrange(20)}"
            dst, port = f"192.168.1.{rng.randrange(8)}", rng.randrange(1, 65536)
        else:  # password guessing: 50 (source, destination, service)
            category, guesser = rng.choice(("r2l", "r2l", "u2r")), rng.randrange(50)
            src, dst, port = f"10.6.0.{guesser}", f"192.168.2.{guesser % 5}", 21
            features["service"] = "ftp"
        record = features | {
            "src_ip": src,
            "src_port": rng.randrange(1024, 65535),
            "dst_ip": dst,
            "dst_port": port,
            "start_time": at,
            "end_time": at,
            "agent_id": f"agent-{rng.randrange(4)}",
        }
        verdict = {"label": "attack", "attack_probability": 0.9, "category": category}
        batch.append(Classified(at, "6", record, verdict))
        if len(batch) == 500 or n == alerts - 1:
            store.write(batch)
            batch = []
    return alerts / (time.perf_counter() - started)


def time_pages(store: Store, runs: int = 20) -> dict[str, tuple[float, float]]:
    """(median, p95) milliseconds of each page (pages over all 30 days: 5 runs, they are slow)."""
    client = TestClient(create_app(store.engine))
    result = {}
    for page in PAGES:
        client.get(page)  # warm the caches once
        times = []
        for _ in range(runs if "last=all" not in page else 5):
            started = time.perf_counter()
            assert client.get(page).status_code == 200, page
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        result[page] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
    return result


def bench(
    name: str, url: str, alerts: int, traffic: str = "uniform", writes_only: bool = False
) -> None:
    engine = engine_for(url)
    migrate(engine)
    store = Store(engine)
    rate = (fill_attacks if traffic == "attacks" else fill)(store, alerts)
    print(f"{name}: {alerts:,} alerts ({traffic}) written at {rate:,.0f}/s")
    if writes_only:
        return
    if engine.dialect.name == "postgresql":  # what autovacuum does once a table grew by a tenth
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE alerts")
    for page, (median, p95) in time_pages(store).items():
        print(f"  {page:40} median {median:7.1f} ms   p95 {p95:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--traffic", choices=("uniform", "attacks"), default="uniform")
    parser.add_argument("--writes-only", action="store_true", help="do not time the pages")
    args = parser.parse_args()
    how = (args.alerts, args.traffic, args.writes_only)
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="desy-bench-") as directory:
            bench("SQLite", f"sqlite:///{Path(directory) / 'alerts.db'}", *how)
    if args.backend in ("postgresql", "both"):
        with temporary_postgres(durable=True) as url:
            bench("PostgreSQL", url, *how)


if __name__ == "__main__":
    main()
