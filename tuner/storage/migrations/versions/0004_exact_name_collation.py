"""Names compare exactly on MariaDB and MySQL too: the experiment and study names, tuner's and
Optuna's, get their character set's binary collation that tells trailing spaces apart (NO PAD).
Under the server's default collation (utf8mb4_general_ci) experiment 'OK' was 'ok', 'E' was 'é'
and 'ok ' was 'ok'. SQLite and PostgreSQL compare names exactly already.

Optuna's ``studies`` table is in the same database, made before tuner's tables (``Store.open``):
left as it was, Optuna's ``create_study(load_if_exists=True)`` would load experiment 'ok''s study
for 'OK/adam/random/0'. A database that has no Optuna tables yet (tuner's tables migrated alone)
is left without. ``MODIFY COLUMN`` keeps each column's unique index; a downgrade fails on names
that differ only as the table's own collation does not tell.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME_COLUMNS = (("tuner_experiments", "name"), ("tuner_studies", "study_name"), ("studies", "study_name"))
"""Every column of names: tuner's, then Optuna's."""


def upgrade() -> None:
    _collate(lambda charset, _table_collation: _exact_collation(charset))


def downgrade() -> None:
    _collate(lambda _charset, table_collation: table_collation)


def _collate(collation: Callable[[str, str], str]) -> None:
    """Give each column of NAME_COLUMNS there is the ``collation`` of its character set and of its
    table's default collation; on MariaDB and MySQL only."""
    connection = op.get_bind()
    if connection.dialect.name not in ("mysql", "mariadb"):
        return
    for table, name in NAME_COLUMNS:
        column = connection.execute(sa.text(
            "SELECT c.COLUMN_TYPE, c.IS_NULLABLE, c.CHARACTER_SET_NAME, t.TABLE_COLLATION"
            "  FROM information_schema.COLUMNS c JOIN information_schema.TABLES t"
            "    ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
            " WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = :table AND c.COLUMN_NAME = :name"),
            {"table": table, "name": name}).first()
        if column is None:
            continue
        kind, nullable, charset, table_collation = column
        op.execute(f"ALTER TABLE `{table}` MODIFY COLUMN `{name}` {kind} CHARACTER SET {charset} "
                   f"COLLATE {collation(charset, table_collation)} {'NULL' if nullable == 'YES' else 'NOT NULL'}")


def _exact_collation(charset: str) -> str:
    """The binary collation of ``charset`` that tells trailing spaces apart: MariaDB's
    ``CHARSET_nopad_bin``, MySQL 8's ``CHARSET_0900_bin``; else ``CHARSET_bin`` (which ignores
    them, but not case or accents)."""
    known = set(op.get_bind().execute(sa.text(
        "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE CHARACTER_SET_NAME = :charset"),
        {"charset": charset}).scalars())
    return next(name for name in (f"{charset}_nopad_bin", f"{charset}_0900_bin", f"{charset}_bin") if name in known)
