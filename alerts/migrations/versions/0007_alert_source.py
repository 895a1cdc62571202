"""Where each alert's connection was captured: the agent's capture sources (interface or pcap
file, log directory), numbered, and each alert's source_id (alerts stored before have none: the
dashboard then shows what their agent said last).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("capture", sa.String(256), nullable=False),
        sa.Column("log_dir", sa.String(512), nullable=False),
        sa.UniqueConstraint("agent_id", "capture", "log_dir", name="uq_sources"),
    )
    op.add_column("alerts", sa.Column("source_id", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("source_id")
    op.drop_table("sources")
