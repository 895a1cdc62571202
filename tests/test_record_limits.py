"""What /classify accepts, every alert store holds: records at the edge of every rule the server
validates with (desy.records' widths and times) are written to SQLite and to a real PostgreSQL
and read back as they were; one past the edge is refused at the door."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from scapy.utils import wrpcapng
from sqlalchemy import select

from alerts.database import engine_for, migrate
from alerts.store import Classified, Store
from alerts.tables import agents, alerts, verdict_counts
from desy import records, schema
from serving.schemas import MAX_FLOWS, MAX_INT, BadRecords, fast_records, validate_flows
from tests.agent.helpers import extract_file, tcp
from tests.conftest import PCAPS

ATTACK = {"label": "attack", "attack_probability": 0.93, "category": "dos"}
LONGEST_IPV6 = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"


def widest(name: str, char: str) -> str:
    return char * records.TEXT_WIDTHS[name]


def edge_records() -> list[dict[str, Any]]:
    """Records at the edges: the widest text fields in 1- to 4-byte characters, the largest
    counts, the latest times, the longest addresses."""
    out = []
    for char in ("x", "é", "€", "😀", "\u00a0"):
        record: dict[str, Any] = {
            name: (MAX_INT if kind == "int" else 1 if kind == "bool" else 1.0)
            for name, kind in schema.FEATURES
            if kind != "cat"
        }
        record |= {name: widest(name, char) for name in schema.CATEGORICAL}
        record |= {
            "src_ip": LONGEST_IPV6,
            "src_port": 65535,
            "dst_ip": "255.255.255.255",
            "dst_port": 65535,
            "start_time": records.MAX_TIME,
            "end_time": records.MAX_TIME,
            "agent_id": widest("agent_id", char),
        }
        out.append(record)
    return out


def test_records_at_the_edges_pass_both_validators():
    flows = edge_records()
    assert fast_records(json.dumps({"flows": flows})) == validate_flows(flows)


@pytest.mark.parametrize(
    "field, value",
    [
        ("protocol_type", "x" * 9),
        ("flag", "tcp\x00"),
        ("service", "h" * 65),
        ("agent_id", "a" * 129),
        ("agent_id", "a\x00b"),
        ("src_ip", "fe80::1%a|b"),
        ("start_time", 1e17),
        ("end_time", records.MAX_TIME * 1.0001),
    ],
)
def test_one_past_the_edge_is_refused(field, value):
    flows = [{**edge_records()[0], field: value}]
    assert fast_records(json.dumps({"flows": flows})) is None
    with pytest.raises(BadRecords) as refused:
        validate_flows(flows)
    assert refused.value.errors[0]["loc"] == ["flows", 0, field]


def test_every_store_holds_what_is_accepted(store_url):
    flows = validate_flows(edge_records())
    engine = engine_for(store_url)
    migrate(engine)
    now = time.time()
    written = Store(engine).write(
        [Classified(now, "1", flow, ATTACK) for flow in flows], keep_normal=True
    )
    assert written == len(flows)
    columns = (*schema.CATEGORICAL, "src_ip", "dst_ip", "start_time", "end_time", "agent_id")
    with engine.connect() as connection:
        stored = connection.execute(select(*(alerts.c[name] for name in columns))).all()
        counted = connection.execute(select(verdict_counts.c.agent_id)).scalars().all()
        seen = connection.execute(select(agents.c.agent_id)).scalars().all()
    assert sorted(tuple(row) for row in stored) == sorted(
        tuple(flow[name] for name in columns) for flow in flows
    )
    expected = sorted(flow["agent_id"] for flow in flows)
    assert sorted(counted) == expected and sorted(seen) == expected


def agent_records(path) -> list[dict[str, Any]]:
    return [records.record(tuple(row.values()), "sensor-1") for row in extract_file(path)[0]]


def test_the_agents_records_pass():
    """What the agent extracts from the shared captures passes both validators."""
    captures = sorted(PCAPS.glob("*.pcap*"))
    assert len(captures) >= 10
    for path in captures:
        flows = agent_records(path)
        for start in range(0, len(flows), MAX_FLOWS):
            batch = flows[start : start + MAX_FLOWS]
            assert fast_records(json.dumps({"flows": batch})) == validate_flows(batch), path


def test_a_pcapng_stamped_past_year_9999_is_refused_by_the_server(tmp_path):
    """pcapng stamps 64-bit times: a connection stamped 2**33 s (year 2242) passes, one stamped
    2**40 s (year 36812) cannot be rendered and is refused, naming its times (the agent drops
    and counts what the server refuses)."""
    for stamp, passes in ((2**33, True), (2**40, False)):
        packets = [
            tcp("10.0.0.1", "10.0.0.2", 1234, 80, "S"),
            tcp("10.0.0.2", "10.0.0.1", 80, 1234, "SA"),
        ]
        for packet in packets:
            packet.time = stamp
        wrpcapng(str(tmp_path / "stamped.pcapng"), packets)
        (flow,) = agent_records(tmp_path / "stamped.pcapng")
        assert flow["start_time"] == stamp
        if passes:
            assert fast_records(json.dumps({"flows": [flow]})) == validate_flows([flow])
            continue
        with pytest.raises(BadRecords) as refused:
            validate_flows([flow])
        assert [error["loc"][2] for error in refused.value.errors] == ["start_time", "end_time"]
