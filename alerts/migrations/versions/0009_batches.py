"""Batch ids: each batch an agent named (X-Desy-Batch) whose verdicts are stored, so that a
batch it resends (its answer was lost, or came as a 503) is stored once.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_batches_received_at", "batches", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_received_at", "batches")
    op.drop_table("batches")
