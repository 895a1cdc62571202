"""Incidents: the alerts of one attack, by what the attack is (alerts.incidents), with their
counts; every alert refers to its incident, and an analyst's action to the incident it was on.
Alerts stored before fall into incidents here, in the order they were received, by the same
rules and the default quiet period (alerts.incidents.QUIET_SECONDS).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from alerts.incidents import QUIET_SECONDS, assign

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Alerts read, assigned and updated at a time.
CHUNK = 20_000
ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _sketch(name: str) -> sa.Column:
    return sa.Column(name, sa.LargeBinary)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("incident_key", sa.BigInteger, nullable=False),
        sa.Column("category", sa.String(8), nullable=False),
        sa.Column("src_ip", sa.String(45), nullable=False),
        sa.Column("dst_ip", sa.String(45), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("src_key", sa.LargeBinary(16)),
        sa.Column("dst_key", sa.LargeBinary(16)),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("connections", sa.BigInteger, nullable=False),
        sa.Column("sources", sa.BigInteger, nullable=False),
        sa.Column("destinations", sa.BigInteger, nullable=False),
        sa.Column("ports", sa.BigInteger, nullable=False),
        _sketch("sources_sketch"),
        _sketch("destinations_sketch"),
        _sketch("ports_sketch"),
        sa.Column("agents", sa.Text, nullable=False),
        sa.Column("peak_rate", sa.Integer, nullable=False),
        sa.Column("rate_second", sa.BigInteger, nullable=False),
        sa.Column("rate_count", sa.Integer, nullable=False),
        sa.Column("max_probability", sa.Float, nullable=False),
        sa.Column("new_alerts", sa.BigInteger, nullable=False),
        sa.Column("escalated_alerts", sa.BigInteger, nullable=False),
        sa.Column("archived_alerts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_incidents_key", "incidents", ["incident_key", "last_seen"])
    op.create_index("ix_incidents_last_seen", "incidents", ["last_seen", "id"])
    op.add_column("alerts", sa.Column("incident_id", sa.BigInteger, nullable=True))
    op.add_column("actions", sa.Column("incident_id", sa.BigInteger, nullable=True))
    op.create_index("ix_actions_incident", "actions", ["incident_id"])
    _assign_stored_alerts(op.get_bind())
    op.create_index("ix_alerts_incident", "alerts", ["incident_id"])


def _assign_stored_alerts(connection: sa.Connection) -> None:
    """Every stored attack alert into its incident, CHUNK alerts at a time, oldest first."""
    alerts = sa.table(
        "alerts",
        *(
            sa.column(name)
            for name in (
                "id",
                "received_at",
                "label",
                "category",
                "src_ip",
                "dst_ip",
                "service",
                "dst_port",
                "start_time",
                "agent_id",
                "attack_probability",
                "status",
                "src_key",
                "dst_key",
                "incident_id",
            )
        ),
    )
    after: tuple[float, int] | None = None
    while True:
        query = sa.select(alerts).order_by(alerts.c.received_at, alerts.c.id).limit(CHUNK)
        if after is not None:
            query = query.where(sa.tuple_(alerts.c.received_at, alerts.c.id) > sa.tuple_(*after))
        rows = connection.execute(query).all()
        if not rows:
            return
        ids, _ = assign(connection, rows, QUIET_SECONDS)
        changes = [{"alert": row.id, "incident": i} for row, i in zip(rows, ids) if i is not None]
        if changes:
            connection.execute(
                sa.update(alerts)
                .where(alerts.c.id == sa.bindparam("alert"))
                .values(incident_id=sa.bindparam("incident")),
                changes,
            )
        after = (rows[-1].received_at, rows[-1].id)


def downgrade() -> None:
    op.drop_index("ix_alerts_incident", "alerts")
    op.drop_index("ix_actions_incident", "actions")
    with op.batch_alter_table("actions") as actions:
        actions.drop_column("incident_id")
    with op.batch_alter_table("alerts") as alerts:
        alerts.drop_column("incident_id")
    op.drop_index("ix_incidents_last_seen", "incidents")
    op.drop_index("ix_incidents_key", "incidents")
    op.drop_table("incidents")
