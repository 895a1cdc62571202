"""The flow record and its verdict: what an agent sends for each connection, and what comes back.

A record is the 41 features (desy.schema, dataset order) followed by the connection's endpoints
and times and the id of the agent that saw it. A verdict is the server's answer for one record.
Every part (agent, client, logs, server, demo, alert store) builds and reads records by these
field names; nothing relies on positions. Standard library only, so the agent can import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

from desy.schema import CATEGORICAL_WIDTHS, DIFFICULTY, FEATURE_NAMES, LABEL, Category

#: Where agents send records.
CLASSIFY_PATH: Final[str] = "/classify"
#: Request headers in which an agent says where it captures (percent-encoded): its interface or
#: pcap file, and its log directory (for `desy-agent pcap-slice` on its host).
SOURCE_HEADERS: Final[tuple[str, str]] = ("X-Desy-Capture", "X-Desy-Log-Dir")
#: Request header naming a batch of records (1-64 characters: letters, digits, `.`, `_`, `-`),
#: the same each time the agent resends it: the alert store keeps a batch's verdicts once.
BATCH_HEADER: Final[str] = "X-Desy-Batch"
BATCH_ID_PATTERN: Final[str] = r"[A-Za-z0-9._-]{1,64}"

#: Record fields that are not model inputs, and their kinds: the connection's endpoints and times
#: (originator first; ports are 0 for ICMP) and the agent that saw it.
CONTEXT: Final[tuple[tuple[str, str], ...]] = (
    ("src_ip", "address"),
    ("src_port", "port"),
    ("dst_ip", "address"),
    ("dst_port", "port"),
    ("start_time", "time"),
    ("end_time", "time"),
    ("agent_id", "agent"),
)
#: The longest IPv4 or IPv6 address, and the longest agent id, in characters.
ADDRESS_WIDTH: Final[int] = 45
AGENT_ID_WIDTH: Final[int] = 128
#: The longest value of every text field of a record, in characters (what a PostgreSQL varchar
#: counts): the server refuses longer ones, and the alert store's columns are as wide.
TEXT_WIDTHS: Final[dict[str, int]] = {
    **CATEGORICAL_WIDTHS,
    "src_ip": ADDRESS_WIDTH,
    "dst_ip": ADDRESS_WIDTH,
    "agent_id": AGENT_ID_WIDTH,
}
#: Characters no text field holds (a regular expression's class): the C0 controls (NUL, which
#: PostgreSQL refuses in text, tab, newlines...), DEL and the C1 controls.
CONTROL_CHARACTERS: Final[str] = "\x00-\x1f\x7f-\x9f"
#: The latest start_time or end_time accepted: 9999-12-31 23:59:59 UTC, the last second a Python
#: datetime (the dashboard's) renders. Times are epoch seconds, never negative.
MAX_TIME: Final[float] = 253_402_300_799.0
CONTEXT_FIELDS: Final[tuple[str, ...]] = tuple(name for name, _ in CONTEXT)
ENDPOINT_FIELDS: Final[tuple[str, ...]] = tuple(name for name, kind in CONTEXT if kind != "agent")
#: What `desy-agent extract` writes for a connection: the features, then the endpoints.
ROW_FIELDS: Final[tuple[str, ...]] = (*FEATURE_NAMES, *ENDPOINT_FIELDS)
#: A flow record as sent to the server.
RECORD_FIELDS: Final[tuple[str, ...]] = (*FEATURE_NAMES, *CONTEXT_FIELDS)
#: A labelled flow table (the lab's, operators' site/*.csv, analysts' feedback), in column order.
LABELLED_FIELDS: Final[tuple[str, ...]] = (
    *FEATURE_NAMES,
    LABEL,
    DIFFICULTY,
    "category",
    "scenario",
    "family",
    "run",
    *ENDPOINT_FIELDS,
)

Record = dict[str, Any]

#: A verdict's label, and its category (one of desy.schema.CATEGORIES, "normal" for normal).
LABELS: Final[tuple[str, ...]] = ("normal", "attack")
Label = Literal["normal", "attack"]


class Verdict(TypedDict):
    """The answer for one record."""

    label: Label
    attack_probability: float
    category: Category
    model_version: NotRequired[str]  # the server says it once per answer; the agent adds it to each


def record(row: Sequence[Any], agent_id: str) -> Record:
    """The record of an agent's row (values in ROW_FIELDS order)."""
    if len(row) != len(ROW_FIELDS):
        raise ValueError(f"a row has {len(ROW_FIELDS)} values, not {len(row)}")
    out = dict(zip(ROW_FIELDS, row))
    out["agent_id"] = agent_id
    return out


def model_columns(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The model's input: one column of values per feature, taken from the records by name."""
    records = list(records)
    return {name: [r[name] for r in records] for name in FEATURE_NAMES}


def verdicts(
    is_attack: Sequence[bool], attack_probability: Sequence[float], category: Sequence[str]
) -> list[Verdict]:
    """Verdicts from the model's decisions, one per record in order."""
    return [
        {"label": "attack" if attack else "normal", "attack_probability": p, "category": c}
        for attack, p, c in zip(is_attack, attack_probability, category, strict=True)
    ]
