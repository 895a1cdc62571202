"""The store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Schema changes go through Alembic migrations (alerts/migrations); this module describes the
latest schema, for queries.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

#: One row per stored verdict (attacks; normal ones too with --store-all).
alerts = Table(
    "alerts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("received_at", Float, nullable=False),  # epoch seconds, when the server classified it
    Column("agent_id", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("label", String(8), nullable=False),
    Column("category", String(8), nullable=False),
    Column("attack_probability", Float, nullable=False),
    Column("src_ip", String(45), nullable=False),
    Column("src_port", Integer, nullable=False),
    Column("dst_ip", String(45), nullable=False),
    Column("dst_port", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=False),
    Column("protocol_type", String(8), nullable=False),
    Column("service", String(64), nullable=False),
    Column("flag", String(8), nullable=False),
    Column("features", JSON, nullable=False),  # the 41 features by name
    Index("ix_alerts_received_at", "received_at"),
    Index("ix_alerts_group", "category", "src_ip", "dst_ip"),
)

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
)
