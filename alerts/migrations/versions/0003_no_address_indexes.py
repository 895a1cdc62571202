"""Drop the address-key indexes: the planner filters CIDRs within the time range (as fast with a
million alerts), and their random inserts cost a quarter of the store's write time.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_alerts_src_key", "alerts")
    op.drop_index("ix_alerts_dst_key", "alerts")


def downgrade() -> None:
    op.create_index("ix_alerts_src_key", "alerts", ["src_key"])
    op.create_index("ix_alerts_dst_key", "alerts", ["dst_key"])
