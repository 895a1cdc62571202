"""The Kubernetes manifests in deploy/k8s validate against the Kubernetes schemas
(kubernetes-validate, strict: no unknown fields) and keep what docs/deploy.md promises."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES = "1.30"


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(
    "document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_manifest_validates(document):
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_server_is_ready_on_readyz_and_the_agent_has_only_net_raw():
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    server = by_kind[("Deployment", "desy-server")]["spec"]["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ("HorizontalPodAutoscaler", "desy-server") in by_kind
    agent = by_kind[("DaemonSet", "desy-agent")]["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True
    assert agent["containers"][0]["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_RAW"],
    }
