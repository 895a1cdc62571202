"""A real `desy serve` on a real PostgreSQL: a record the store could not hold (a protocol_type
wider than its column, a NUL byte, a time no one can render, an address with a scope id) is
refused by /classify with a 400 naming it, and the records at the edges are all stored."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import func, select

from alerts.database import engine_for
from alerts.tables import alerts
from tests.conftest import free_port, new_database
from tests.serving.conftest import start_server, stop_server, wait_ready
from tests.test_record_limits import edge_records

REFUSED = {
    "protocol_type": "x" * 9,
    "service": "http\x00",
    "agent_id": "sensor\x00",
    "start_time": 1e17,
    "src_ip": "fe80::1%a|b",
}


def test_what_classify_accepts_postgresql_stores(model_store, postgres_url):
    uri, _ = model_store
    store = new_database(postgres_url)
    edges = edge_records()
    port = free_port()
    server = start_server(uri, None, port, "--store-url", store, "--store-all", "--workers", "1")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        for field, value in REFUSED.items():
            flows = [edges[0], {**edges[1], field: value}]
            answer = httpx.post(f"{url}/classify", json={"flows": flows}, timeout=60)
            assert answer.status_code == 400, (field, answer.text)
            assert answer.json()["invalid_records"] == 1
            assert answer.json()["detail"][0]["loc"] == ["flows", 1, field]
        answer = httpx.post(f"{url}/classify", json={"flows": edges}, timeout=60)
        assert answer.status_code == 200, answer.text
        engine = engine_for(store)
        deadline = time.monotonic() + 60
        stored = 0
        while stored < len(edges) and time.monotonic() < deadline:
            time.sleep(0.5)
            with engine.connect() as connection:
                stored = connection.execute(select(func.count()).select_from(alerts)).scalar_one()
        assert stored == len(edges)
    finally:
        stop_server(server)
