"""DeSy on many hosts (network namespaces, root): three agents capturing their live interface,
two model-server replicas behind nginx over TLS, the alert store on PostgreSQL, the champion
from an MLflow tracking server. One replica is killed mid-run and nothing is lost; a new
champion reaches the agents through a rolling restart of the servers, the agents left running."""

from __future__ import annotations

import json
import signal
import time

import pytest
from sqlalchemy import func, select

from alerts.database import engine_for
from alerts.tables import alerts, verdict_counts
from deploy.cluster import ATTACKER, MLFLOW_URI, WEBS, running
from tests.conftest import new_database
from tests.serving.conftest import register_small_model

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(1800)]


@pytest.fixture
def store(postgres_url):
    """A fresh PostgreSQL database for the replicas' alert store."""
    return new_database(postgres_url)


def flows(cluster, web) -> list[dict]:
    path = cluster.logs(web) / "flows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_live_agents_two_replicas_a_kill_and_a_new_champion(
    small_model, small_tables, store, tmp_path
):
    with running(tmp_path / "cluster", store, f"sqlite:///{tmp_path}/mlflow.db") as cluster:
        first = register_small_model(MLFLOW_URI, small_model, small_tables)
        for index in (0, 1):
            cluster.start_replica(index)
            cluster.wait_replica(index)
        cluster.start_agents()

        cluster.browse(rounds=2)
        cluster.kill_replica(0)  # mid-run: nginx and the agents' retries carry on with replica 1
        cluster.browse(rounds=2)
        cluster.scan(WEBS[1])
        time.sleep(3)

        second = register_small_model(MLFLOW_URI, small_model, small_tables)
        cluster.start_replica(0)  # rolling restart onto the new champion
        cluster.wait_replica(0)
        cluster.kill_replica(1, signal.SIGTERM)
        cluster.start_replica(1)
        cluster.wait_replica(1)
        changed = time.time()
        cluster.browse(rounds=2)
        time.sleep(2)

        assert cluster.stop_agents() == {web.name: 0 for web in WEBS}  # nothing lost or rejected
        engine = engine_for(store)
        with engine.connect() as connection:
            counted = dict(
                connection.execute(
                    select(verdict_counts.c.agent_id, func.sum(verdict_counts.c.flows)).group_by(
                        verdict_counts.c.agent_id
                    )
                ).all()
            )
            stored = connection.execute(
                select(alerts.c.agent_id, alerts.c.src_ip, alerts.c.dst_ip)
            ).all()
        engine.dispose()

    assert second != first
    for web in WEBS:
        summary = json.loads((cluster.logs(web) / "summary.json").read_text())
        seen = flows(cluster, web)
        # connections in = verdicts out, through the kill and the restarts
        assert summary["connections_emitted"] == summary["flows_classified"] == len(seen) > 0
        assert summary["flows_lost"] == summary["flows_rejected"] == 0
        assert summary["packets_kernel_dropped"] == 0
        versions = [f["verdict"]["model_version"] for f in seen if f["start_time"] > changed]
        assert versions and set(versions) == {second}, web.name
        assert {f["verdict"]["model_version"] for f in seen} <= {first, second}
        # the servers counted this agent's verdicts under its own id (a killed replica may not
        # have flushed its last half second of counts)
        assert 0 < counted[web.name] <= summary["flows_classified"]
        # each agent sees its own host's traffic (and, as any host does, IPv6 multicast)
        assert all(web.ip in (f["src_ip"], f["dst_ip"]) for f in seen if ":" not in f["src_ip"])
    assert set(counted) == {web.name for web in WEBS}
    # every alert is attributed to the agent of the host it was seen on
    hosts = {web.name: web.ip for web in WEBS}
    assert stored and all(hosts[a] in (src, dst) for a, src, dst in stored if ":" not in src)
    scanned = [f for f in flows(cluster, WEBS[1]) if f["src_ip"] == ATTACKER.ip]
    assert len(scanned) >= 300
    flagged = sum(f["verdict"]["label"] == "attack" for f in scanned)
    assert flagged >= 0.8 * len(scanned)
    assert sum(agent == WEBS[1].name for agent, src, _ in stored if src == ATTACKER.ip) == flagged
