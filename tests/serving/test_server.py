"""The real model server over HTTP: classification, auth, validation, limits, health, metrics."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from desy import schema
from desy.inference import decide
from tests.conftest import free_port, run
from tests.serving.conftest import TOKEN, start_server, stop_server, wait_ready

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def records(frame, n):
    """JSON-ready flow records from a prepared table."""
    rows = frame.head(n)[list(schema.FEATURE_NAMES)].to_dict(orient="records")
    return [
        dict(
            row,
            src_ip="10.0.0.1",
            src_port=1234,
            dst_ip="10.0.0.2",
            dst_port=80,
            start_time=1.0,
            end_time=2.0,
            agent_id="t",
        )
        for row in rows
    ]


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
    expected = decide(
        pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]),
        meta["classes"],
        meta["threshold"],
    )
    got = body["results"]
    assert [r["label"] == "attack" for r in got] == expected.is_attack.tolist()
    assert [r["category"] for r in got] == expected.category.tolist()
    assert np.allclose(
        [r["attack_probability"] for r in got], expected.attack_probability, atol=1e-5
    )


def test_token_required_except_on_open_paths(client, small_tables):
    flows = {"flows": records(small_tables["kddtest_plus"], 1)}
    assert client.post("/classify", json=flows).status_code == 401
    assert (
        client.post("/classify", json=flows, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert client.post("/any/new/endpoint", json={}).status_code == 401
    assert client.get("/").status_code == 401
    for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert client.get(path).status_code == 200, path


BAD = {
    "negative bytes": ("src_bytes", -1, "greater_than_equal"),
    "rate above one": ("serror_rate", 1.5, "less_than_equal"),
    "string count": ("count", "many", "int_type"),
    "numeric string": ("count", "12", "int_type"),
    "true as integer": ("src_bytes", True, "int_type"),
    "huge integer": ("src_bytes", 10**400, "less_than_equal"),
    "NaN time": ("start_time", float("nan"), "finite_number"),
    "infinite time": ("end_time", float("inf"), "finite_number"),
    "false as time": ("start_time", False, "float_type"),
    "bad address": ("src_ip", "10.0.0.300", "value_error"),
    "long address": ("dst_ip", "1" * 400, "string_too_long"),
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
    body = json.dumps({"flows": flows}).encode()  # json.dumps writes NaN, Infinity and 10**400
    response = client.post(
        "/classify", content=body, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["flows", 2, field] and detail["type"] == error
    assert response.json()["invalid_records"] == 1


def test_many_bad_records_get_a_short_answer(client):
    response = client.post("/classify", json={"flows": [{}] * 10_000}, headers=AUTH)
    assert response.status_code == 400
    body = response.json()
    assert body["invalid_records"] == 10_000 and len(body["detail"]) == 20
    assert len(response.content) < 10_000


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "text/plain", "application/x-www-form-urlencoded"]
)
def test_other_content_types_are_415(client, content_type):
    response = client.post(
        "/classify", content=b'{"flows": []}', headers=AUTH | {"Content-Type": content_type}
    )
    assert response.status_code == 415


def test_openapi_declares_the_400_body(client):
    doc = client.get("/docs.json").json()
    detail = doc["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array"


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"flows": 5}', b'{"flows": [1]}', b"\xff\xfe"]
)
def test_malformed_bodies_are_400(client, body):
    response = client.post(
        "/classify", content=body, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text


def test_body_limits_count_the_bytes_that_arrive(client):
    huge = b'{"flows": [' + b" " * (17 * 2**20) + b"]}"
    assert client.post("/classify", content=huge, headers=AUTH).status_code == 413

    def chunks(size: int):
        yield b'{"flows": ['
        for _ in range(size // 2**20):
            yield b" " * 2**20
        yield b"]}"

    assert client.post("/classify", content=chunks(17 * 2**20), headers=AUTH).status_code == 413
    response = client.post("/classify", content=chunks(2**20), headers=AUTH)
    assert response.status_code == 200 and response.json()["results"] == []


def test_chunked_body_with_a_small_content_length_is_refused(server):
    """Transfer-Encoding and Content-Length together (request smuggling): never a 1 GiB body."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunks = [
            b'{"flows": [',
            *[b" " * 2**20] * 20,
            b"]}",
            b"",
        ]  # 20 MiB of valid JSON, limit 16 MiB
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server closed the connection early: refused
        answer = sock.recv(4096)
    assert answer.split()[1] in (b"400", b"413"), answer[:200]


def test_unknown_categoricals_are_accepted_encoded_and_counted(client, small_model, small_tables):
    pipeline, meta, _ = small_model
    frame = small_tables["kddtest_plus"].head(4).copy()
    frame["service"] = ["quic", "http", "gopher9", "http"]
    frame["flag"] = ["SF", "WEIRD", "SF", "SF"]
    before = _metric(client, 'desy_unknown_categorical_total{feature="service"}')
    response = client.post("/classify", json={"flows": records(frame, 4)}, headers=AUTH)
    assert response.status_code == 200
    expected = decide(
        pipeline.predict_proba(frame[list(schema.FEATURE_NAMES)]),
        meta["classes"],
        meta["threshold"],
    )
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
    bad_bodies = [
        b"{",
        b'{"flows": [{}]}',
        b'{"flows": "x"}',
        json.dumps({"flows": [{"src_bytes": -1}]}).encode(),
    ]
    statuses = set()
    for index in range(10_000):
        headers = AUTH if index % 5 else {}
        statuses.add(
            client.post(
                "/classify",
                content=bad_bodies[index % 4],
                headers=headers | {"Content-Type": "application/json"},
            ).status_code
        )
    assert statuses <= {400, 401, 422}
    response = client.post(
        "/classify", json={"flows": records(small_tables["kddtest_plus"], 10)}, headers=AUTH
    )
    assert response.status_code == 200 and len(response.json()["results"]) == 10


def test_refuses_public_address_without_token():
    serve = [sys.executable, "-m", "commands", "serve", "--host", "0.0.0.0"]
    result = run(serve, 60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "without a token" in result.stderr


def test_ready_once_a_champion_appears_without_restart(model_store, tmp_path):
    """No champion at start: /readyz says why and /classify is 503; the loader keeps retrying,
    so naming a champion later makes the server ready."""
    import mlflow

    uri, version = model_store
    store = tmp_path / "mlflow.db"
    shutil.copy(uri.removeprefix("sqlite:///"), store)
    registry = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    registry.delete_registered_model_alias("desy-nids", "champion")
    port = free_port()
    proc = start_server(f"sqlite:///{store}", None, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: httpx.get(f"{url}/livez", timeout=2).status_code == 200,
            "server never came alive",
        )
        _wait(
            lambda: "retrying" in httpx.get(f"{url}/readyz", timeout=2).json()["status"],
            "/readyz never said why",
        )
        assert httpx.get(f"{url}/readyz").status_code == 503
        assert httpx.post(f"{url}/classify", json={"flows": []}).status_code == 503
        registry.set_registered_model_alias("desy-nids", "champion", version)
        _wait(
            lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
            "never ready after the champion appeared",
        )
        # Each worker loads the champion on its own retry schedule: like an agent, retry a 503
        # from one still loading until every answer comes from the champion.
        _wait(
            lambda: all(
                httpx.post(f"{url}/classify", json={"flows": []}).status_code == 200
                for _ in range(4)
            ),
            "a worker never loaded the champion",
        )
        assert httpx.post(f"{url}/classify", json={"flows": []}).headers["x-model-version"] == str(
            version
        )
    finally:
        stop_server(proc)


def test_each_server_keeps_its_own_metrics(server, model_store, client, small_tables):
    """Starting another server on the host must not wipe this one's /metrics."""
    client.post("/classify", json={"flows": records(small_tables["kddtest_plus"], 3)}, headers=AUTH)
    before = _metric(client, "desy_flows_classified_total")
    assert before >= 3
    port = free_port()
    other = start_server(model_store[0], None, port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", other)
        assert _metric(client, "desy_flows_classified_total") == before
    finally:
        stop_server(other)


def _wait(condition, message: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(message)


def test_bentoml_build_packages_the_service(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    result = run([Path(sys.executable).with_name("bentoml"), "build", "-q"], 300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    built = list((tmp_path / "bentoml" / "bentos" / "desy_nids").glob("*/bento.yaml"))
    assert built and "serving.service:DesyNids" in built[0].read_text()


def test_schemathesis_finds_no_failure_against_the_openapi_document(server):
    """Property-based requests from the served OpenAPI document: every check (no 5xx, status
    codes and bodies as documented, schema-valid requests accepted, invalid ones refused)."""
    url, _ = server
    schemathesis = [Path(sys.executable).with_name("schemathesis"), "run", f"{url}/docs.json"]
    options = ["--checks", "all", "--max-examples", 300, "--generation-deterministic"]
    result = run([*schemathesis, "-H", f"Authorization: Bearer {TOKEN}", *options], 900)
    assert result.returncode == 0, result.stdout[-4000:]


def test_headers_that_never_finish_are_cut_off(server):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert sock.recv(4096) == b""  # the server closed the connection
    assert time.monotonic() - started < 30


def test_endless_headers_are_refused_before_they_fill_memory(server, client):
    """uvicorn's httptools protocol buffers headers without a limit: DeSy answers 431 past
    16 KiB and closes; a request with 8 KiB of headers is still served."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    line = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(10_000):  # 10 MB, never the end of the headers
                sock.sendall(line)
        except OSError:
            pass  # closed by the server while sending
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    padding = {f"X-Padding-{n}": "a" * 1000 for n in range(8)}
    response = client.post("/classify", json={"flows": []}, headers=AUTH | padding)
    assert response.status_code == 200
