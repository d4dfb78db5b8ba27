"""Experiments record the version of their stored study file's format (``spec_version``, see
``tuner.worker.SPEC_VERSION``); the experiments stored before have format 1.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tuner_experiments", sa.Column("spec_version", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("tuner_experiments", "spec_version")
