"""The real model server over HTTP: classification, auth, validation, limits, health, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from desy import schema
from desy.demo import free_port
from desy.inference import decide
from tests.conftest import ROOT
from tests.serving.conftest import TOKEN, start_server, stop_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def records(frame, n):
    """JSON-ready flow records from a prepared table."""
    rows = frame.head(n)[list(schema.FEATURE_NAMES)].to_dict(orient="records")
    return [dict(row, src_ip="10.0.0.1", src_port=1234, dst_ip="10.0.0.2", dst_port=80,
                 start_time=1.0, end_time=2.0, agent_id="t") for row in rows]


@pytest.fixture(scope="module")
def client(server):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_classify_in_order_with_model_version(client, server, small_model, small_tables):
    pipeline, meta, _ = small_model
    frame = small_tables["kddtest_plus"].sample(300, random_state=3)
    response = client.post("/classify", json={"flows": records(frame, 300)}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == server[1] == response.headers["x-model-version"]
    expected = decide(pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]), meta["classes"], meta["threshold"])
    got = body["results"]
    assert [r["label"] == "attack" for r in got] == expected.is_attack.tolist()
    assert [r["category"] for r in got] == expected.category.tolist()
    assert np.allclose([r["attack_probability"] for r in got], expected.attack_probability, atol=1e-5)


def test_token_required_on_classify_only(client, small_tables):
    flows = {"flows": records(small_tables["kddtest_plus"], 1)}
    assert client.post("/classify", json=flows).status_code == 401
    assert client.post("/classify", json=flows, headers={"Authorization": "Bearer nope"}).status_code == 401
    for path in ("/livez", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


BAD = {
    "negative bytes": ("src_bytes", -1, "greater_than_equal"),
    "rate above one": ("serror_rate", 1.5, "less_than_equal"),
    "string count": ("count", "many", "int_parsing"),
    "bool out of range": ("land", 2, "less_than_equal"),
    "missing field": ("flag", None, "missing"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_record_names_index_and_field(client, small_tables, case):
    field, value, error = BAD[case]
    flows = records(small_tables["kddtest_plus"], 3)
    if value is None:
        del flows[2][field]
    else:
        flows[2][field] = value
    response = client.post("/classify", json={"flows": flows}, headers=AUTH)
    assert response.status_code == 400
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["flows", 2, field] and detail["type"] == error


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"flows": 5}', b'{"flows": [1]}', b"\xff\xfe"])
def test_malformed_bodies_are_400(client, body):
    response = client.post("/classify", content=body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == 400, response.text


def test_body_limits(client):
    huge = b'{"flows": [' + b" " * (17 * 2**20) + b"]}"
    assert client.post("/classify", content=huge, headers=AUTH).status_code == 413

    def chunks():
        yield b'{"flows": []}'

    assert client.post("/classify", content=chunks(), headers=AUTH).status_code == 411


def test_unknown_categoricals_are_accepted_encoded_and_counted(client, small_model, small_tables):
    pipeline, meta, _ = small_model
    frame = small_tables["kddtest_plus"].head(4).copy()
    frame["service"] = ["quic", "http", "gopher9", "http"]
    frame["flag"] = ["SF", "WEIRD", "SF", "SF"]
    before = _metric(client, 'desy_unknown_categorical_total{feature="service"}')
    response = client.post("/classify", json={"flows": records(frame, 4)}, headers=AUTH)
    assert response.status_code == 200
    expected = decide(pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]), meta["classes"], meta["threshold"])
    assert [r["category"] for r in response.json()["results"]] == expected.category.tolist()
    assert _metric(client, 'desy_unknown_categorical_total{feature="service"}') == before + 2
    assert _metric(client, 'desy_unknown_categorical_total{feature="flag"}') >= 1
    assert _metric(client, "desy_flows_classified_total") >= 4


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
def test_10k_malformed_requests_then_still_classifies(client, small_tables):
    bad_bodies = [b"{", b'{"flows": [{}]}', b'{"flows": "x"}', json.dumps({"flows": [{"src_bytes": -1}]}).encode()]
    statuses = set()
    for index in range(10_000):
        headers = AUTH if index % 5 else {}
        statuses.add(client.post("/classify", content=bad_bodies[index % 4], headers=headers | {"Content-Type": "application/json"}).status_code)
    assert statuses <= {400, 401, 422}
    response = client.post("/classify", json={"flows": records(small_tables["kddtest_plus"], 10)}, headers=AUTH)
    assert response.status_code == 200 and len(response.json()["results"]) == 10


def test_refuses_public_address_without_token():
    result = subprocess.run([sys.executable, "-m", "desy.cli", "serve", "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "without a token" in result.stderr


def test_not_ready_without_a_champion(tmp_path):
    port = free_port()
    proc = start_server(f"sqlite:///{tmp_path}/empty.db", None, port)
    url = f"http://127.0.0.1:{port}"
    try:
        alive = False
        for _ in range(240):
            try:
                alive = httpx.get(f"{url}/livez", timeout=2).status_code == 200
            except httpx.TransportError:
                pass
            if alive:
                break
            time.sleep(0.5)
        assert alive, "server never came alive"
        assert httpx.get(f"{url}/readyz").status_code == 503
        response = httpx.post(f"{url}/classify", json={"flows": []})
        assert response.status_code == 503
    finally:
        stop_server(proc)


def test_bentoml_build_packages_the_service(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "build", "-q"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    built = list((tmp_path / "bentoml" / "bentos" / "desy_nids").glob("*/bento.yaml"))
    assert built and "serving.service:DesyNids" in built[0].read_text()
