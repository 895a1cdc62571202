"""The alert store: alerts, per-minute verdict counts, agents.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    text = {"nullable": False}
    op.create_table(
        "alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, **text),
        sa.Column("agent_id", sa.String(128), **text),
        sa.Column("model_version", sa.String(32), **text),
        sa.Column("label", sa.String(8), **text),
        sa.Column("category", sa.String(8), **text),
        sa.Column("attack_probability", sa.Float, **text),
        *(sa.Column(name, sa.String(45), **text) for name in ("src_ip", "dst_ip")),
        *(sa.Column(name, sa.Integer, **text) for name in ("src_port", "dst_port")),
        *(sa.Column(name, sa.Float, **text) for name in ("start_time", "end_time")),
        sa.Column("protocol_type", sa.String(8), **text),
        sa.Column("service", sa.String(64), **text),
        sa.Column("flag", sa.String(8), **text),
        sa.Column("features", sa.JSON, **text),
    )
    op.create_index("ix_alerts_received_at", "alerts", ["received_at"])
    op.create_index("ix_alerts_group", "alerts", ["category", "src_ip", "dst_ip"])
    op.create_table(
        "verdict_counts",
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("category", sa.String(8), primary_key=True),
        sa.Column("flows", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agents")
    op.drop_table("verdict_counts")
    op.drop_table("alerts")
