"""Suppression rules are no longer deleted: removing one records who removed it and when.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("suppressions", sa.Column("removed_at", sa.Float, nullable=True))
    op.add_column("suppressions", sa.Column("removed_by", sa.String(128), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM suppressions WHERE removed_at IS NOT NULL")
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("removed_by")
        batch.drop_column("removed_at")
