"""Request and response models of POST /classify, built from the one feature schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from desy import schema

MAX_FLOWS = 10_000

_KIND_TYPES = {
    "cat": Annotated[str, Field(min_length=1, max_length=64)],
    "int": Annotated[int, Field(ge=0)],
    "bool": Annotated[int, Field(ge=0, le=1)],
    "rate": Annotated[float, Field(ge=0.0, le=1.0)],
}

#: One flow record: the 41 features (types and ranges from desy.schema) plus endpoints.
FlowRecord = create_model(
    "FlowRecord",
    __config__=ConfigDict(extra="ignore"),
    **{name: (_KIND_TYPES[kind], ...) for name, kind in schema.FEATURES},
    src_ip=(str, ""),
    src_port=(Annotated[int, Field(ge=0, le=65535)], 0),
    dst_ip=(str, ""),
    dst_port=(Annotated[int, Field(ge=0, le=65535)], 0),
    start_time=(float, 0.0),
    end_time=(float, 0.0),
    agent_id=(Annotated[str, Field(max_length=128)], ""),
)


class Verdict(BaseModel):
    label: Literal["normal", "attack"]
    attack_probability: float
    category: Literal["normal", "dos", "probe", "r2l", "u2r"]


class ClassifyResponse(BaseModel):
    model_version: str
    results: list[Verdict]
