"""Request and response models of POST /classify, built from the one feature schema.

Types are strict: an integer is a JSON integer (not "12", not true, not 1.5), a time or rate a
finite number, an address a valid IPv4 or IPv6 address (or empty). A bad batch is answered with
the number of invalid records and the first MAX_ERRORS errors, however many there are.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

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


def _address(value: str) -> str:
    if value:
        ipaddress.ip_address(value)  # ValueError → a validation error naming the field
    return value


_STRICT = {"strict": True}
_KIND_TYPES = {
    "cat": Annotated[str, Field(min_length=1, max_length=64, **_STRICT)],
    "int": Annotated[int, Field(ge=0, le=MAX_INT, **_STRICT)],
    "bool": Annotated[int, Field(ge=0, le=1, **_STRICT)],
    "rate": Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, **_STRICT)],
}
Address = Annotated[
    str,
    Field(max_length=45, **_STRICT),
    AfterValidator(_address),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
                {"const": ""},
            ]
        }
    ),
]
Port = Annotated[int, Field(ge=0, le=65535, **_STRICT)]
Time = Annotated[float, Field(ge=0.0, allow_inf_nan=False, **_STRICT)]

AgentId = Annotated[str, Field(max_length=128, **_STRICT)]
#: Context kinds (desy.records.CONTEXT): type and default when a record leaves the field out.
_CONTEXT_TYPES = {
    "address": (Address, ""),
    "port": (Port, 0),
    "time": (Time, 0.0),
    "agent": (AgentId, ""),
}

#: One flow record (desy.records): the 41 features (types and ranges from desy.schema), then its
#: endpoints, times and agent.
FlowRecord = create_model(
    "FlowRecord",
    __config__=ConfigDict(extra="ignore"),
    **{name: (_KIND_TYPES[kind], ...) for name, kind in schema.FEATURES},
    **{name: _CONTEXT_TYPES[kind] for name, kind in records.CONTEXT},
)
_RECORDS = TypeAdapter(list[FlowRecord])
_RECORD = TypeAdapter(FlowRecord)
#: The request body's JSON schema (what the OpenAPI document shows for `flows`).
FLOWS_SCHEMA = {"type": "array", "maxItems": MAX_FLOWS, "items": _RECORD.json_schema()}


class BadRecords(ValueError):
    """Some records of a batch are invalid: how many, and the first errors."""

    def __init__(self, invalid: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{invalid} invalid flow record(s)")
        self.invalid, self.errors = invalid, errors


def validate_flows(flows: list[Any]) -> list[Any]:
    """The records of a batch, validated; BadRecords if any is invalid."""
    try:
        return _RECORDS.validate_python(flows)
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
