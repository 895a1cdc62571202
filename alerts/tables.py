"""The store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Schema changes go through Alembic migrations (alerts/migrations); this module describes the
latest schema, for queries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from desy.records import TEXT_WIDTHS
from desy.schema import FEATURE_NAMES

metadata = MetaData()
#: The longest name an analyst's act is recorded under (an account's, a Basic auth user name).
USER_WIDTH = 128
#: The longest account name.
USER_NAME_WIDTH = 64
#: The longest note or reason an analyst writes (Text columns: the dashboard's limit).
NOTE_WIDTH = 2000
#: A row id: 64-bit on PostgreSQL, SQLite's rowid alias there.
ID = BigInteger().with_variant(Integer, "sqlite")

#: One row per stored verdict (attacks; normal ones too with --store-all).
alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),  # epoch seconds, when the server classified it
    Column("agent_id", String(TEXT_WIDTHS["agent_id"]), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("label", String(8), nullable=False),
    Column("category", String(8), nullable=False),
    Column("attack_probability", Float, nullable=False),
    Column("src_ip", String(TEXT_WIDTHS["src_ip"]), nullable=False),
    Column("src_port", Integer, nullable=False),
    Column("dst_ip", String(TEXT_WIDTHS["dst_ip"]), nullable=False),
    Column("dst_port", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=False),
    Column("protocol_type", String(TEXT_WIDTHS["protocol_type"]), nullable=False),
    Column("service", String(TEXT_WIDTHS["service"]), nullable=False),
    Column("flag", String(TEXT_WIDTHS["flag"]), nullable=False),
    Column("features", JSON, nullable=False),  # the 41 feature values, in FEATURE_NAMES order
    Column("status", String(16), nullable=False, server_default="new"),  # new, escalated, archived
    Column(
        "analyst_category", String(8)
    ),  # an analyst's verdict: "normal" (false positive) or a category
    Column("src_key", LargeBinary(16)),  # the address as 16 bytes (IPv4 mapped), for CIDR ranges
    Column("dst_key", LargeBinary(16)),
    Column("group_key", BigInteger),  # alerts.groups.group_key: the group's index
    Column("source_id", Integer),  # sources.id: where the agent said it captured the connection
    Column("incident_id", BigInteger),  # incidents.id (alerts.incidents): the attack it is part of
    Index("ix_alerts_received_at", "received_at"),
    Index("ix_alerts_group_key", "group_key"),
    Index("ix_alerts_status_received", "status", "received_at"),
    Index("ix_alerts_incident", "incident_id"),
)


def _sketch(name: str) -> Column:
    """A distinct count's state (alerts.incidents.Sketch: at most 8 KiB); None: the incident's
    identity fixes the value, its count is 1."""
    return Column(name, LargeBinary)


#: One row per incident: the alerts of one attack, by what the attack is (alerts.incidents), with
#: its counts kept as its alerts are stored.
incidents = Table(
    "incidents",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),  # given by the writer, under its lock
    Column("incident_key", BigInteger, nullable=False),  # alerts.incidents.incident_key
    Column("category", String(8), nullable=False),
    # what names it: the victim of a dos, the attacker of a probe, both and the service of an
    # r2l/u2r; "" for what does not
    Column("src_ip", String(TEXT_WIDTHS["src_ip"]), nullable=False),
    Column("dst_ip", String(TEXT_WIDTHS["dst_ip"]), nullable=False),
    Column("service", String(TEXT_WIDTHS["service"]), nullable=False),
    Column("src_key", LargeBinary(16)),  # the named addresses as 16 bytes, for CIDR filters
    Column("dst_key", LargeBinary(16)),
    Column("first_seen", Float, nullable=False),  # received_at of its first and last alerts
    Column("last_seen", Float, nullable=False),
    Column("connections", BigInteger, nullable=False),
    Column("sources", BigInteger, nullable=False),  # distinct counts (exact below 1,024)
    Column("destinations", BigInteger, nullable=False),
    Column("ports", BigInteger, nullable=False),  # distinct destination ports
    _sketch("sources_sketch"),
    _sketch("destinations_sketch"),
    _sketch("ports_sketch"),
    Column("agents", Text, nullable=False),  # the first AGENTS_KEPT agent ids, comma-separated
    Column("peak_rate", Integer, nullable=False),  # most connections starting in one second
    Column("rate_second", BigInteger, nullable=False),  # the latest such second, and its count
    Column("rate_count", Integer, nullable=False),
    Column("max_probability", Float, nullable=False),
    # its alerts by status: the inbox shows an incident under each status it has alerts in
    Column("new_alerts", BigInteger, nullable=False),
    Column("escalated_alerts", BigInteger, nullable=False),
    Column("archived_alerts", BigInteger, nullable=False),
    Index("ix_incidents_key", "incident_key", "last_seen"),
    Index("ix_incidents_last_seen", "last_seen", "id"),
)


def features_by_name(values: list[Any]) -> dict[str, Any]:
    """An alert's stored features (a JSON array: names repeated in every row were three fifths of
    its bytes) by name."""
    return dict(zip(FEATURE_NAMES, values, strict=True))


#: How many verdicts each agent got per minute and category (timelines, agent status).
verdict_counts = Table(
    "verdict_counts",
    metadata,
    Column("minute", BigInteger, primary_key=True),  # epoch seconds // 60
    Column("agent_id", String(128), primary_key=True),
    Column("category", String(8), primary_key=True),
    Column("flows", BigInteger, nullable=False),
)

#: Every agent the server has answered: when last, and with which model version.
agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("last_seen", Float, nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("capture", String(256)),  # as the agent reports it: an interface or a pcap file
    Column("log_dir", String(512)),  # its log directory, where pcap-slice finds capture.pcap
)


#: Every capture source an agent has said it captures from, numbered for the alerts to refer to.
sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(128), nullable=False),
    Column("capture", String(256), nullable=False),  # an interface or a pcap file
    Column("log_dir", String(512), nullable=False),  # where pcap-slice finds capture.pcap
    UniqueConstraint("agent_id", "capture", "log_dir", name="uq_sources"),
)


def _audit(when: str) -> tuple[Column, Column, Column]:
    """Row id, time (epoch seconds) and user of an analyst's act."""
    return (
        Column("id", ID, primary_key=True, autoincrement=True),
        Column(when, Float, nullable=False),
        Column("user", String(USER_WIDTH), nullable=False),
    )


#: What analysts did, to which alert group, when, and why: the audit trail.
actions = Table(
    "actions",
    metadata,
    *_audit("at"),
    Column("action", String(32), nullable=False),
    Column("category", String(8), nullable=False),
    Column("src_ip", String(45), nullable=False),
    Column("dst_ip", String(45), nullable=False),
    Column("alerts", Integer, nullable=False),  # how many alerts it changed
    Column("note", Text, nullable=False, server_default=""),
    Column("incident_id", BigInteger),  # the incident acted on, or the groups' incident
    Index("ix_actions_group", "category", "src_ip", "dst_ip"),
    Index("ix_actions_incident", "incident_id"),
)

#: Rules that archive new alerts as they are stored; every field set must match.
suppressions = Table(
    "suppressions",
    metadata,
    *_audit("created_at"),
    Column("category", String(8)),  # the conditions: None matches anything
    *(Column(name, String(49)) for name in ("src_cidr", "dst_cidr")),
    Column("service", String(TEXT_WIDTHS["service"])),
    Column("reason", Text, nullable=False),
    Column("removed_at", Float),  # when an analyst removed the rule (kept, for the record)
    Column("removed_by", String(USER_WIDTH)),
)

#: Analysts' accounts (`desy users add`): with any, the dashboard signs analysts in by name.
users = Table(
    "users",
    metadata,
    Column("name", String(USER_NAME_WIDTH), primary_key=True),
    Column("password_scrypt", String(160), nullable=False),  # scrypt$N$r$p$salt$hash
    Column("created_at", Float, nullable=False),
)

#: Dashboard sign-ins: the SHA-256 of the session cookie's value, whose it is, until when, and
#: the password hash it was signed in with (a new password, or a removed account, ends it).
sessions = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_name", String(USER_NAME_WIDTH), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("password_scrypt", String(160), nullable=False),
)

#: Batches an agent named (X-Desy-Batch) whose verdicts are stored: a resent one is stored once.
batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),  # epoch seconds; deleted with the retention
    Index("ix_batches_received_at", "received_at"),
)
