"""Request and response models of POST /classify, built from the one feature schema.

Types are strict: an integer is a JSON integer (not "12", not true, not 1.5), a rate a finite
number, a time epoch seconds from 0 to desy.records.MAX_TIME, an address a plain IPv4 or IPv6 address (no scope id) or empty, a text field no
longer than the alert store's column (desy.records.TEXT_WIDTHS) and free of control characters:
whatever is accepted, every store can hold and the dashboard render. A bad batch is answered
with the number of invalid records and the first MAX_ERRORS errors, however many there are.

The rules are written once (_KINDS) and applied by two validators: msgspec decodes a body
straight from its bytes into record dicts, several times faster than pydantic; a body it
refuses is validated again by pydantic (FlowRecord), the authority, whose errors the 400 names.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from functools import lru_cache
from typing import Annotated, Any, Literal

import bentoml
import msgspec
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from desy import records, schema

MAX_FLOWS = 10_000
MAX_ERRORS = 20
#: Largest count accepted: what a signed 64-bit integer holds.
MAX_INT = 2**63 - 1

#: Every kind of field (desy.schema features, desy.records context): its JSON type, bounds, and
#: the default of a context field a record leaves out. A text field is also at most as long as
#: desy.records.TEXT_WIDTHS says, and holds no control character.
_KINDS: dict[str, tuple[type, dict[str, Any], Any]] = {
    "cat": (str, {"min_length": 1}, ...),
    "int": (int, {"ge": 0, "le": MAX_INT}, ...),
    "bool": (int, {"ge": 0, "le": 1}, ...),
    "rate": (float, {"ge": 0.0, "le": 1.0}, ...),
    "address": (str, {}, ""),
    "port": (int, {"ge": 0, "le": 65535}, 0),
    "time": (float, {"ge": 0.0, "le": records.MAX_TIME}, 0.0),
    "agent": (str, {}, ""),
}
_FIELDS = (*schema.FEATURES, *records.CONTEXT)
_CONTROL = re.compile(f"[{records.CONTROL_CHARACTERS}]")


def _bounds(name: str, kind: str) -> dict[str, Any]:
    bounds = _KINDS[kind][1]
    if name in records.TEXT_WIDTHS:
        return {**bounds, "max_length": records.TEXT_WIDTHS[name]}
    return bounds


@lru_cache(maxsize=65_536)
def _text(value: str) -> str:
    if found := _CONTROL.search(value):
        raise ValueError(f"control character U+{ord(found.group()):04X} not allowed")
    return value


@lru_cache(maxsize=65_536)
def _address(value: str) -> str:
    if "%" in value:  # Python reads fe80::1%eth0 as an address with a scope id
        raise ValueError("an address with a scope id (%) is not allowed")
    if value:
        ipaddress.ip_address(value)  # ValueError → a validation error naming the field
    return value


#: What the OpenAPI document says of a text field: no control character.
_TEXT_SCHEMA = {"pattern": f"^[^{records.CONTROL_CHARACTERS}]*$"}
_ADDRESS_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "format": "ipv4", "pattern": "^[^%]*$"},
            {"type": "string", "format": "ipv6", "pattern": "^[^%]*$"},
            {"const": ""},
        ]
    }
)


def _pydantic_type(name: str, kind: str) -> Any:
    python_type = _KINDS[kind][0]
    field: dict[str, Any] = {"strict": True, **_bounds(name, kind)}
    checks: tuple[Any, ...] = ()
    if python_type is float:
        field["allow_inf_nan"] = False
    if kind == "address":
        checks = (AfterValidator(_address), _ADDRESS_SCHEMA)
    elif python_type is str:
        field["json_schema_extra"], checks = _TEXT_SCHEMA, (AfterValidator(_text),)
    return Annotated[python_type, Field(**field), *checks]


def _msgspec_field(name: str, kind: str) -> tuple:
    python_type, _, default = _KINDS[kind]
    bounds = _bounds(name, kind)
    finite = {"le": sys.float_info.max} if python_type is float and "le" not in bounds else {}
    typed = Annotated[python_type, msgspec.Meta(**bounds, **finite)]
    return (name, typed) if default is ... else (name, typed, default)


#: One flow record (desy.records): the 41 features (types and ranges from desy.schema), then its
#: endpoints, times and agent.
FlowRecord = create_model(
    "FlowRecord",
    __config__=ConfigDict(extra="ignore"),
    **{name: (_pydantic_type(name, kind), _KINDS[kind][2]) for name, kind in _FIELDS},
)
_RECORDS = TypeAdapter(list[FlowRecord])
_RECORD = TypeAdapter(FlowRecord)
#: The request body's JSON schema (what the OpenAPI document shows for `flows`).
FLOWS_SCHEMA = {"type": "array", "maxItems": MAX_FLOWS, "items": _RECORD.json_schema()}

_FastRecord = msgspec.defstruct("FastRecord", [_msgspec_field(*field) for field in _FIELDS])
_FAST_BODY = msgspec.json.Decoder(
    msgspec.defstruct(
        "FastBody", [("flows", Annotated[list[_FastRecord], msgspec.Meta(max_length=MAX_FLOWS)])]
    )
)
_ADDRESS_FIELDS = tuple(name for name, kind in records.CONTEXT if kind == "address")
_TEXT_FIELDS = tuple(name for name, kind in _FIELDS if _KINDS[kind][0] is str and kind != "address")


class Records(list):
    """Flow records validated already (dicts)."""


def fast_records(body: bytes | str) -> Records | None:
    """The records of a valid body, decoded by msgspec, every field set (as pydantic sets them);
    None if msgspec or a check of the values refuses it (pydantic then decides, and names the
    errors)."""
    try:
        flows = _FAST_BODY.decode(body).flows
        for names, check in ((_ADDRESS_FIELDS, _address), (_TEXT_FIELDS, _text)):
            for name in names:
                for value in {getattr(flow, name) for flow in flows}:
                    check(value)
    except (msgspec.DecodeError, ValueError):  # msgspec.ValidationError is a DecodeError
        return None
    return Records(msgspec.to_builtins(flows))


class ClassifyRequest(bentoml.IODescriptor):
    """POST /classify's body: decoded by fast_records when valid; any other body is parsed
    loosely, for validate_flows to count its bad records and name the first errors."""

    flows: Annotated[list[Any], Field(max_length=MAX_FLOWS), WithJsonSchema(FLOWS_SCHEMA)]

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
        flows = fast_records(bytes(json_data) if isinstance(json_data, bytearray) else json_data)
        if flows is None:
            return super().model_validate_json(json_data, **kwargs)
        return cls.model_construct(flows=flows)


class BadRecords(ValueError):
    """Some records of a batch are invalid: how many, and the first errors."""

    def __init__(self, invalid: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{invalid} invalid flow record(s)")
        self.invalid, self.errors = invalid, errors


def validate_flows(flows: list[Any]) -> list[dict[str, Any]]:
    """The records of a batch, validated, as dicts; BadRecords if any is invalid."""
    if isinstance(flows, Records):
        return flows
    try:
        return [record.__dict__ for record in _RECORDS.validate_python(flows)]
    except ValidationError:
        pass
    invalid, errors = 0, []
    for index, flow in enumerate(flows):  # again one by one: count the bad ones, keep a few errors
        try:
            _RECORD.validate_python(flow)
        except ValidationError as err:
            invalid += 1
            for error in err.errors(include_url=False, include_context=False, include_input=False):
                if len(errors) < MAX_ERRORS:
                    errors.append(
                        {
                            "loc": ["flows", index, *error["loc"]],
                            "msg": error["msg"],
                            "type": error["type"],
                        }
                    )
    raise BadRecords(invalid, errors)


class Verdict(BaseModel):
    """desy.records.Verdict, as the OpenAPI document shows it."""

    label: Literal[records.LABELS]
    attack_probability: float
    category: Literal[schema.CATEGORIES]


class ClassifyResponse(BaseModel):
    model_version: str
    results: list[Verdict]


class BadRequest(BaseModel):
    """The body of every 400 answer."""

    error: str
    detail: list[dict[str, Any]] = Field(
        default_factory=list, description=f"The first {MAX_ERRORS} errors: loc, msg, type."
    )
    invalid_records: int = 0
