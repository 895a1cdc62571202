"""Where each agent captures: its capture source (interface or pcap file) and its log directory
(where `desy-agent pcap-slice` finds the rotated capture.pcap files), as the agent reports them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("capture", sa.String(256), nullable=True))
    op.add_column("agents", sa.Column("log_dir", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("log_dir")
        batch.drop_column("capture")
