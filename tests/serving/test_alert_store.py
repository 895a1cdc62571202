"""A real `desy serve` (two workers) recording attack verdicts in the alert store, across a restart."""

from __future__ import annotations

import json
import time

import httpx
import pandas as pd
from sqlalchemy import func, select

from alerts.database import engine_for
from alerts.tables import alerts, features_by_name, verdict_counts
from desy.records import ROW_FIELDS, record
from desy.schema import FEATURE_NAMES
from tests.agent.helpers import extract_file
from tests.conftest import LAB_TABLE, PCAPS, free_port
from tests.serving.conftest import start_server, stop_server, wait_ready


def classify(url: str, flows: list[dict]) -> httpx.Response:
    """POST /classify, retrying a 503 (a worker still loading its model) as agents do."""
    for _ in range(20):
        answer = httpx.post(f"{url}/classify", json={"flows": flows}, timeout=60)
        if answer.status_code != 503:
            return answer
        time.sleep(0.5)
    return answer


def test_a_restart_mid_run_loses_no_attack_verdict(model_store, tmp_path):
    uri, version = model_store
    store = f"sqlite:///{tmp_path}/alerts.db"
    flood = [tuple(row.values()) for row in extract_file(PCAPS / "synflood_spoofed.pcap")[0]]
    lab = pd.read_csv(LAB_TABLE)
    normal = json.loads(lab[lab["label"] == "normal"][list(ROW_FIELDS)].to_json(orient="values"))
    rows = [row for pair in zip(flood[:3000], normal[:3000], strict=True) for row in pair]
    flows = [record(row, f"agent-{i % 3}") for i, row in enumerate(rows)]
    attacks = 0
    for half in (
        flows[:3000],
        flows[3000:],
    ):  # the server is stopped and started between the halves
        port = free_port()
        proc = start_server(uri, None, port, "--workers", "2", "--store-url", store)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            for start in range(0, len(half), 500):
                answer = classify(url, half[start : start + 500])
                assert answer.status_code == 200, answer.text
                attacks += sum(v["label"] == "attack" for v in answer.json()["results"])
        finally:
            stop_server(proc)
    assert 0 < attacks < len(flows)  # both kinds of verdict were sent
    engine = engine_for(store)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(alerts)).scalar_one() == attacks
        assert connection.execute(select(func.sum(verdict_counts.c.flows))).scalar_one() == len(
            flows
        )
        one = connection.execute(select(alerts).limit(1)).one()
    assert one.model_version == version and one.agent_id.startswith("agent-")
    sent = next(
        flow
        for flow in flows
        if (flow["src_ip"], flow["src_port"], flow["start_time"])
        == (one.src_ip, one.src_port, one.start_time)
    )
    assert features_by_name(one.features) == {name: sent[name] for name in FEATURE_NAMES}


def test_a_spoofed_flood_replayed_through_an_agent_is_one_incident_told_once(model_store, tmp_path):
    """synflood_spoofed.pcap (37,669 connections from 37,623 sources) through a real agent and
    server: its alerts are one dos incident against the victim, and the webhook (a local
    receiver) gets one message that it began, then digests of its growth."""
    from alerts.tables import incidents
    from tests.serving.test_dashboard_browser import run_agent
    from tests.test_webhook import Hook

    uri, _ = model_store
    store = f"sqlite:///{tmp_path}/alerts.db"
    hook = Hook()
    port = free_port()
    webhook = ["--webhook-url", hook.url, "--webhook-interval", "0.2"]
    proc = start_server(
        uri, None, port, "--store-url", store, *webhook, "--webhook-digest-interval", "2"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        run_agent(url, PCAPS / "synflood_spoofed.pcap", "sensor-f", tmp_path / "agent")
    finally:
        stop_server(proc)  # sends what the webhook has pending
    hook.server.shutdown()
    engine = engine_for(store)
    with engine.connect() as connection:
        found = [dict(row._mapping) for row in connection.execute(select(incidents))]
        stored = connection.execute(
            select(func.count()).select_from(alerts).where(alerts.c.category == "dos")
        ).scalar_one()
    flood = [i for i in found if i["category"] == "dos"]
    assert [i["dst_ip"] for i in flood] == ["10.10.10.10"]  # one, against the victim
    assert flood[0]["connections"] == stored > 30_000
    assert abs(flood[0]["sources"] - stored) < 0.1 * stored
    told = [i for body in hook.bodies if body["kind"] == "new" for i in body["incidents"]]
    assert [i["id"] for i in told if i["category"] == "dos"] == [flood[0]["id"]]  # once
    digests = [
        i
        for body in hook.bodies
        if body["kind"] == "digest"
        for i in body["incidents"]
        if i["id"] == flood[0]["id"]
    ]
    assert digests and digests[-1]["connections"] == stored
    assert sum(i["added"] for i in digests) + told[0]["added"] == stored
    assert len(hook.bodies) < 50  # not a message per alert group (37,623 of them)
