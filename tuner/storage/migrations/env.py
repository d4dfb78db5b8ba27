"""Alembic environment for tuner's tables; run through ``tuner.storage.migrate``.

tuner keeps its revision in ``tuner_alembic_version`` so it never touches Optuna's
``alembic_version``. On PostgreSQL the upgrade holds a transaction advisory lock (on
MariaDB ``tuner.storage.migrate`` holds a named lock around it), so concurrent launchers
migrate one at a time; on SQLite the writer engine's BEGIN IMMEDIATE does that.
"""

from alembic import context
from sqlalchemy import text

from tuner.storage.migrate import VERSION_TABLE
from tuner.storage.schema import metadata

LOCK_KEY = 0x7475_6E65  # "tune"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  transaction_per_migration=False)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    context.run_migrations()
