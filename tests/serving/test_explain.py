"""`desy explain` and the dashboard's "Why this verdict" over a real MLflow store (the small model
registered as champion) and a real alert store holding connections of a shared capture, as the
model's ONNX export classified them; the dashboard in Chromium (its screenshot to
$DESY_SCREENSHOTS, else the test's directory)."""

from __future__ import annotations

import html
import json
import os
import re
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from alerts.database import engine_for, migrate
from alerts.store import Classified, Store
from alerts.tables import alerts
from desy.inference import OnnxModel
from desy.records import model_columns, verdicts
from desy.registry import META_FILE, ONNX_FILE
from desy.schema import FEATURE_NAMES
from pipelines.explain import ForestExplainer
from tests.conftest import run
from tests.serving.conftest import launch_chromium
from tests.serving.test_dashboard_accounts import running_dashboard
from tests.test_explain import captured

FLOOD = 20


@pytest.fixture(scope="module")
def flood():
    """The first connections of the spoofed SYN flood capture, as records."""
    return [dict(r) for r in captured("synflood_spoofed.pcap").head(FLOOD).to_dict("records")]


@pytest.fixture
def stored(model_store, small_model, flood, tmp_path):
    """(store URL, alert id of the first connection) of the flood's connections, classified by
    the champion's ONNX export and stored under its version."""
    _, version = model_store
    _, _, model_dir = small_model
    found = OnnxModel.from_dir(model_dir, META_FILE, ONNX_FILE).classify(model_columns(flood))
    answers = verdicts(
        found.is_attack.tolist(), found.attack_probability.tolist(), found.category.tolist()
    )
    url = f"sqlite:///{tmp_path}/alerts.db"
    engine = engine_for(url)
    migrate(engine)
    now = time.time()
    Store(engine).write([Classified(now, version, r, v) for r, v in zip(flood, answers)])
    c = alerts.c
    with engine.connect() as connection:
        ids = dict(connection.execute(select(c.src_ip, c.id).where(c.label == "attack")).all())
    engine.dispose()
    assert len(ids) == FLOOD  # every one an alert, each from its own spoofed source
    return url, ids[flood[0]["src_ip"]]


def expected_lines(model_store, small_model, features: dict) -> list[str]:
    """The explanation, computed here from the model the store registered."""
    pipeline, meta, _ = small_model
    return ForestExplainer(pipeline, meta, model_store[1]).explain(features).lines()


def desy_explain(model_store, *argv, **kwargs):
    env = {**os.environ, "MLFLOW_TRACKING_URI": model_store[0]}
    return run([sys.executable, "-m", "commands", "explain", *argv], 300, env=env, **kwargs)


def test_desy_explain_prints_a_record_and_a_stored_alert_alike(
    model_store, small_model, flood, stored, tmp_path
):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(flood[0]))
    expected = expected_lines(model_store, small_model, flood[0])
    assert expected[0].startswith("P(dos) ") and f"desy-nids v{model_store[1]}" in expected[0]
    by_file = desy_explain(model_store, path)
    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout.splitlines() == expected
    by_stdin = desy_explain(model_store, "-", "--shown", "3", input=json.dumps(flood[0]))
    assert by_stdin.stdout.splitlines() == expected[:4] + [by_stdin.stdout.splitlines()[-1]]
    assert re.fullmatch(
        r"38 other features together: [+-]\d\.\d\d", by_stdin.stdout.splitlines()[-1]
    )
    verdict = {"label": "attack", "attack_probability": 0.8, "category": "dos"}
    logged = flood[0] | {"verdict": verdict | {"model_version": model_store[1]}}  # flows.jsonl's
    by_line = desy_explain(model_store, "-", input=json.dumps(logged))
    assert by_line.stdout.splitlines() == expected
    lost = flood[0] | {"verdict": verdict | {"model_version": "999"}}
    by_lost = desy_explain(model_store, "-", input=json.dumps(lost))
    assert by_lost.returncode == 1 and "model version 999:" in by_lost.stderr
    url, first = stored
    by_alert = desy_explain(model_store, "--alert", first, "--store-url", url)
    assert by_alert.returncode == 0, by_alert.stderr
    assert by_alert.stdout.splitlines() == expected


def test_desy_explain_refuses_what_it_cannot_explain(model_store, stored, tmp_path):
    url, _ = stored
    missing = desy_explain(model_store, "--alert", 999_999, "--store-url", url)
    assert missing.returncode == 1 and "no alert 999999" in missing.stderr
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"duration": 0}))
    partial = desy_explain(model_store, path)
    assert partial.returncode == 2 and "the record has no protocol_type" in partial.stderr
    absent = desy_explain(model_store, tmp_path / "absent.json")
    assert absent.returncode == 2 and "cannot read a JSON record" in absent.stderr
    path.write_text(json.dumps(dict.fromkeys(FEATURE_NAMES, 0)))
    unknown = desy_explain(model_store, path, "--model-version", "999")
    assert unknown.returncode == 1 and "model version 999:" in unknown.stderr


def stored_under_a_lost_version(url: str, features: dict) -> int:
    """The id of an alert stored under a version the registry does not have."""
    engine = engine_for(url)
    verdict = {"label": "attack", "attack_probability": 0.9, "category": "dos"}
    Store(engine).write([Classified(time.time(), "999", features, verdict)])
    with engine.connect() as connection:
        found = connection.scalar(select(alerts.c.id).where(alerts.c.model_version == "999"))
    engine.dispose()
    return found


def test_the_drill_down_shows_why_in_the_browser(model_store, small_model, flood, stored, tmp_path):
    url, alert_id = stored
    first = flood[0]
    expected = expected_lines(model_store, small_model, first)
    lost = stored_under_a_lost_version(url, flood[1] | {"src_ip": "10.99.0.1"})
    env = {"MLFLOW_TRACKING_URI": model_store[0]}
    with running_dashboard(url, tmp_path / "dashboard.log", env=env) as web:
        fragment = httpx.get(f"{web}/alerts/{alert_id}/why", timeout=120)
        assert fragment.status_code == 200, fragment.text
        assert f"<li>{html.escape(expected[1])}</li>" in fragment.text
        assert httpx.get(f"{web}/alerts/999999/why").status_code == 404
        gone = httpx.get(f"{web}/alerts/{lost}/why", timeout=60)
        assert gone.status_code == 200 and "No explanation: model version 999:" in gone.text
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            group = {"category": "dos", "src_ip": first["src_ip"], "dst_ip": first["dst_ip"]}
            page.goto(f"{web}/group?{httpx.QueryParams(group | {'last': 'all'})}")
            row = page.locator("#connections details").first
            row.locator("summary").click()
            row.get_by_role("button", name="Why this verdict").click()
            why = row.locator("div.why")
            expect(why.locator("li")).to_have_count(10)
            assert why.locator("p").first.inner_text() == expected[0]
            assert why.locator("li").all_inner_texts() == expected[1:-1]
            shots = Path(os.environ.get("DESY_SCREENSHOTS") or tmp_path)
            why.screenshot(path=str(shots / "why.png"))
            browser.close()
