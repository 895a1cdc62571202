"""The dashboard's inbox and overview over a million stored alerts, on SQLite and PostgreSQL.

Fills a new store with N generated alerts (spread over 30 days, 5,000 sources, 200 destinations,
40 agents, the four attack categories) through the same Store.write the server uses (then, on
PostgreSQL, ANALYZE: the planner statistics autovacuum keeps for a store that grew), then times
the dashboard's pages in-process (FastAPI's TestClient: server time, no network), 20 requests
each, and prints the median and p95. Target: p95 <= 300 ms.

    uv run python benchmarks/alert_store.py --alerts 1000000            # SQLite and PostgreSQL
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


def bench(name: str, url: str, alerts: int) -> None:
    engine = engine_for(url)
    migrate(engine)
    store = Store(engine)
    rate = fill(store, alerts)
    print(f"{name}: {alerts:,} alerts written at {rate:,.0f}/s")
    if engine.dialect.name == "postgresql":  # what autovacuum does once a table grew by a tenth
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE alerts")
    for page, (median, p95) in time_pages(store).items():
        print(f"  {page:40} median {median:7.1f} ms   p95 {p95:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="desy-bench-") as directory:
            bench("SQLite", f"sqlite:///{Path(directory) / 'alerts.db'}", args.alerts)
    if args.backend in ("postgresql", "both"):
        with temporary_postgres(durable=True) as url:
            bench("PostgreSQL", url, args.alerts)


if __name__ == "__main__":
    main()
