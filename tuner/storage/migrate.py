"""Bring tuner's tables to the newest revision (Alembic, version table tuner_alembic_version).

Alembic is imported by ``upgrade`` only: readers check the revision without it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "tuner_alembic_version"
"""Where tuner records its revision; Optuna keeps its own in ``alembic_version``."""


def known_revisions() -> set[str]:
    """The revisions this tuner's migrations define: each file of ``migrations/versions`` is named
    after its revision, ``REVISION_what_it_does.py`` (a test holds this to Alembic's own list)."""
    return {path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("*.py")}


def unknown_revisions(connection: Connection) -> list[str]:
    """The revisions recorded in ``VERSION_TABLE`` that this tuner does not know: a newer tuner
    migrated the database. Call it only where the table exists."""
    recorded = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
    return sorted(set(recorded) - known_revisions())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``; safe to call on every start and concurrently."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _mysql_lock(engine), engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


@contextmanager
def _mysql_lock(engine: Engine) -> Iterator[None]:
    """MySQL commits DDL implicitly, so no transaction lock spans a migration: hold a named lock
    on a connection of its own, closed afterwards (which frees the lock whatever happened)."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT GET_LOCK('tuner_migrations', 120)")
        cursor.fetchall()
        yield
    finally:
        connection.invalidate()  # a closed session holds no lock
