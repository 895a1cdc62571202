"""The server's two validators of a /classify body: msgspec's fast path never accepts what
pydantic (the authority) refuses, and decodes what both accept to the same records."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from desy import records, schema
from serving.schemas import BadRecords, fast_records, validate_flows

VALID: dict[str, Any] = {
    **{name: 0 for name, kind in schema.FEATURES if kind in ("int", "bool")},
    **{name: 0.5 for name, kind in schema.FEATURES if kind == "rate"},
    "protocol_type": "tcp",
    "service": "http",
    "flag": "SF",
    "src_ip": "10.0.0.1",
    "src_port": 1234,
    "dst_ip": "2001:db8::1",
    "dst_port": 80,
    "start_time": 1.5,
    "end_time": 2.0,
    "agent_id": "a1",
}
FIELDS = [name for name, _ in (*schema.FEATURES, *records.CONTEXT)]
EDGES = [
    None, True, False, -1, 0, 1, 2, 1.0, 0.5, -0.0, 65535, 65536, 2**63 - 1, 2**63, 2**64,
    -(2**63), 1e308, 1e400, "", "1", "tcp", "10.0.0.300", "::1", "x" * 46, "y" * 65,
    "z" * 129, "\ud800", [], {}, [1], "w" * 8, "v" * 9, "t\x00", "\x00", "a\n", "\t", "\x7f",
    "\x85", "é" * 8, "fe80::1%a|b", "fe80::1%eth0", "::ffff:1.2.3.4", 2**32, 2**33, 1e17,
    records.MAX_TIME, records.MAX_TIME + 1, 0.1,
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
)


def by_pydantic(flows: list[Any]) -> list[dict[str, Any]] | None:
    try:
        return validate_flows(flows)
    except BadRecords:
        return None


def check(body: str) -> None:
    fast = fast_records(body)
    if fast is not None:
        assert fast == by_pydantic(json.loads(body)["flows"]), body


def refusal(**changes: Any) -> list[dict[str, Any]]:
    """The errors pydantic names for a record with these changes (the fast path refuses it too)."""
    flows = [VALID, {**VALID, **changes}]
    assert fast_records(json.dumps({"flows": flows})) is None
    try:
        validate_flows(flows)
    except BadRecords as bad:
        assert bad.invalid == 1
        return bad.errors
    raise AssertionError(f"accepted: {changes}")


def test_text_fields_are_as_wide_as_the_store_and_free_of_control_characters():
    assert records.TEXT_WIDTHS == {
        "protocol_type": 8, "service": 64, "flag": 8, "src_ip": 45, "dst_ip": 45, "agent_id": 128,
    }  # fmt: skip
    for name, width in records.TEXT_WIDTHS.items():
        if name not in ("src_ip", "dst_ip"):
            check(json.dumps({"flows": [{**VALID, name: "é" * width}]}))
            assert fast_records(json.dumps({"flows": [{**VALID, name: "é" * width}]}))
            (error,) = refusal(**{name: "x" * (width + 1)})
            assert error["loc"] == ["flows", 1, name] and error["type"] == "string_too_long"
            for control in ("\x00", "\n", "\x1b", "\x7f", "\x9f"):
                (error,) = refusal(**{name: f"a{control}"})
                assert error["loc"] == ["flows", 1, name]
                assert f"control character U+{ord(control):04X}" in error["msg"]
    (error,) = refusal(src_ip="fe80::1%a|b")
    assert error["loc"] == ["flows", 1, "src_ip"] and "scope id" in error["msg"]
    (error,) = refusal(dst_ip="fe80::1%1")
    assert error["loc"] == ["flows", 1, "dst_ip"]


def test_times_are_bounded():
    latest = {"start_time": records.MAX_TIME, "end_time": records.MAX_TIME}
    assert fast_records(json.dumps({"flows": [{**VALID, **latest}]}))
    for name in ("start_time", "end_time"):
        errors = refusal(**{name: 1e17})
        assert [error["loc"] for error in errors] == [["flows", 1, name]]
        assert errors[0]["type"] == "less_than_equal"


def test_a_valid_body_takes_the_fast_path():
    body = json.dumps({"flows": [VALID, {**VALID, "src_ip": "", "agent_id": ""}]})
    assert fast_records(body) == by_pydantic(json.loads(body)["flows"]) is not None


@settings(max_examples=3000, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), VALUES, min_size=1, max_size=3))
def test_fast_path_accepts_only_what_pydantic_accepts(changes):
    check(json.dumps({"flows": [VALID, {**VALID, **changes}]}))


@settings(max_examples=300, deadline=None)
@given(missing=st.sampled_from(FIELDS), extra=st.text(max_size=10))
def test_missing_and_extra_fields(missing, extra):
    flow = {key: value for key, value in VALID.items() if key != missing} | {extra: 1}
    check(json.dumps({"flows": [flow]}))


def test_bodies_only_pydantic_reads_fall_back():
    for body in ('{"flows": [{"duration": NaN}]}', '{"flows": "x"}', "[]", "{", '{"flows": [1]}'):
        assert fast_records(body) is None
