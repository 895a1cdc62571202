"""Triage: alert status and analyst verdicts, address keys for CIDR filters, the audit trail of
analysts' actions, suppression rules.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def audit(when: str) -> tuple[sa.Column, sa.Column, sa.Column]:
    return (
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(when, sa.Float, nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
    )


def upgrade() -> None:
    with op.batch_alter_table("alerts") as alerts:
        alerts.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="new"))
        alerts.add_column(sa.Column("analyst_category", sa.String(8), nullable=True))
        alerts.add_column(sa.Column("src_key", sa.LargeBinary(16), nullable=True))
        alerts.add_column(sa.Column("dst_key", sa.LargeBinary(16), nullable=True))
    op.create_index("ix_alerts_status_received", "alerts", ["status", "received_at"])
    op.create_index("ix_alerts_src_key", "alerts", ["src_key"])
    op.create_index("ix_alerts_dst_key", "alerts", ["dst_key"])
    op.create_table(
        "actions",
        *audit("at"),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("category", sa.String(8), nullable=False),
        *(sa.Column(name, sa.String(45), nullable=False) for name in ("src_ip", "dst_ip")),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_actions_group", "actions", ["category", "src_ip", "dst_ip"])
    op.create_table(
        "suppressions",
        *audit("created_at"),
        sa.Column("category", sa.String(8), nullable=True),
        *(sa.Column(name, sa.String(49), nullable=True) for name in ("src_cidr", "dst_cidr")),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_actions_group", "actions")
    op.drop_table("actions")
    op.drop_index("ix_alerts_dst_key", "alerts")
    op.drop_index("ix_alerts_src_key", "alerts")
    op.drop_index("ix_alerts_status_received", "alerts")
    with op.batch_alter_table("alerts") as alerts:
        for column in ("dst_key", "src_key", "analyst_category", "status"):
            alerts.drop_column(column)
