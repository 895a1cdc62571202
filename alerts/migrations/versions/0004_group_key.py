"""Index alert groups by a 64-bit hash of (category, source, destination), not by the three
strings: the group index was a third of the store's write time.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from alerts.tables import group_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: group_key() in SQL: the first 16 hex digits of the MD5 as a signed 64-bit integer.
POSTGRES_KEY = "('x' || left(md5(category || '|' || src_ip || '|' || dst_ip), 16))::bit(64)::bigint"


def upgrade() -> None:
    op.add_column("alerts", sa.Column("group_key", sa.BigInteger, nullable=True))
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        op.execute(f"UPDATE alerts SET group_key = {POSTGRES_KEY}")
    else:
        connection.connection.driver_connection.create_function(
            "desy_group_key", 3, group_key, deterministic=True
        )
        op.execute("UPDATE alerts SET group_key = desy_group_key(category, src_ip, dst_ip)")
    op.create_index("ix_alerts_group_key", "alerts", ["group_key"])
    op.drop_index("ix_alerts_group", "alerts")


def downgrade() -> None:
    op.create_index("ix_alerts_group", "alerts", ["category", "src_ip", "dst_ip"])
    op.drop_index("ix_alerts_group_key", "alerts")
    with op.batch_alter_table("alerts") as alerts:
        alerts.drop_column("group_key")
