"""`desy demo` end to end on its own synthetic capture, with the small model as champion."""

import json
import os
import sys

from alerts.database import engine_for
from alerts.store import Store
from tests.conftest import run


def test_demo_summarises_the_synthetic_capture(model_store, tmp_path):
    uri, version = model_store
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    result = run(
        [sys.executable, "-m", "commands", "demo", "--log-dir", tmp_path / "demo"], 600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"model version {version}" in result.stdout
    assert (
        "top flagged talkers" in result.stdout and "192.168.10.66" in result.stdout
    )  # the scanner
    flows = [
        json.loads(line) for line in (tmp_path / "demo" / "flows.jsonl").read_text().splitlines()
    ]
    by_source = {}
    for flow in flows:
        by_source.setdefault(flow["src_ip"], []).append(flow["verdict"]["category"])
    scan = by_source["192.168.10.66"]
    assert len(scan) == 1024 and scan.count("probe") / len(scan) > 0.9
    flood = [
        category
        for source, categories in by_source.items()
        if source.startswith("10.")
        for category in categories
    ]
    assert len(flood) == 3000 and flood.count("dos") / len(flood) > 0.9
    client = [
        (f["service"], f["verdict"]["category"]) for f in flows if f["src_ip"] == "192.168.10.5"
    ]
    assert len(client) == 40  # 20 web and 20 DNS sessions
    # the small test model (30 trees on KDDTrain+'s 20 % subset) flags some of the web pages; the
    # served model flags none (README, first section)
    assert [category for service, category in client if service == "domain_u"] == ["normal"] * 20
    assert (tmp_path / "demo" / "capture.pcap").stat().st_size > 100_000
    attacks = sum(flow["verdict"]["label"] == "attack" for flow in flows)
    store = f"sqlite:///{(tmp_path / 'demo' / 'alerts.db').resolve()}"
    assert f"desy dashboard --store-url {store}" in result.stdout
    assert (
        Store(engine_for(store)).alert_count() == attacks
    )  # the dashboard shows the demo's alerts
