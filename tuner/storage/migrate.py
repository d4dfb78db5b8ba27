"""Bring tuner's tables to the newest revision (Alembic, version table tuner_alembic_version)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``; safe to call on every start and concurrently."""
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
