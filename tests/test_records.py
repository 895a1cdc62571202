"""The flow record travels by name: agent row → record → JSON → server model → model columns."""

from __future__ import annotations

import json

import pytest

from desy import records
from desy.schema import CATEGORIES, FEATURE_NAMES
from serving.schemas import FlowRecord, Verdict, fast_records, validate_flows
from tests.conftest import PCAPS


def test_the_server_model_has_the_record_fields_in_order():
    assert tuple(FlowRecord.model_fields) == records.RECORD_FIELDS
    assert records.RECORD_FIELDS == (*FEATURE_NAMES, *records.CONTEXT_FIELDS)
    assert set(Verdict.model_fields) | {"model_version"} == set(records.Verdict.__annotations__)
    assert Verdict.model_json_schema()["properties"]["category"]["enum"] == list(CATEGORIES)


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="a row has 47 values, not 46"):
        records.record((0,) * 46, "agent")


def test_the_model_sees_each_feature_under_its_own_name():
    from capture_agent.extractor import Extractor
    from capture_agent.pcap import frames

    extractor = Extractor()
    rows = [
        row
        for frame in frames(PCAPS / "nmap_80_w_service_detection.pcap")
        for row in extractor.feed(*frame)
    ] + extractor.finish()
    assert {row[1] for row in rows} == {"tcp", "icmp"}
    body = json.dumps({"flows": [records.record(row, "a1") for row in rows]})
    by_pydantic = validate_flows(json.loads(body)["flows"])
    assert fast_records(body) == by_pydantic  # the server's two validators agree
    columns = records.model_columns(by_pydantic)
    assert list(columns) == list(FEATURE_NAMES)
    for i, row in enumerate(rows):
        by_name = dict(zip(records.ROW_FIELDS, row))
        assert {name: columns[name][i] for name in FEATURE_NAMES} == {
            name: by_name[name] for name in FEATURE_NAMES
        }
    assert by_pydantic[0]["agent_id"] == "a1"


def test_verdicts_from_decisions():
    assert records.verdicts([True, False], [0.9, 0.1], ["dos", "normal"]) == [
        {"label": "attack", "attack_probability": 0.9, "category": "dos"},
        {"label": "normal", "attack_probability": 0.1, "category": "normal"},
    ]
    with pytest.raises(ValueError):
        records.verdicts([True], [0.9, 0.1], ["dos"])
