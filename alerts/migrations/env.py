"""Alembic environment: migrations run on the connection alerts.database.migrate hands over."""

from alembic import context

from alerts.database import VERSION_TABLE
from alerts.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
