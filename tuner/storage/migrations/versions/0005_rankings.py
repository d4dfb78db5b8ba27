"""The rankings of each experiment's best configurations, for plain SQL: ``tuner_rankings`` (one
row per optimizer and sampler: tied rank, runs, mean and median with their 95% bootstrap
intervals) and ``tuner_improvements`` (P(a run of one beats a run of the other) for every ordered
pair, with its interval). Written by the worker that finishes an experiment's re-evaluations
(``tuner.rankings``); empty before.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DOUBLE = sa.Double()


def _experiment_id() -> sa.Column:
    return sa.Column("experiment_id", sa.Integer, sa.ForeignKey("tuner_experiments.id", ondelete="CASCADE"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "tuner_rankings",
        sa.Column("id", sa.Integer, primary_key=True),
        _experiment_id(),
        sa.Column("optimizer", sa.String(32), nullable=False),
        sa.Column("sampler", sa.String(32), nullable=False),
        sa.Column("rank", sa.String(16), nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("diverged_runs", sa.Integer, nullable=False),
        *(sa.Column(name, DOUBLE) for name in ("mean", "mean_low", "mean_high", "median", "median_low",
                                               "median_high")),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("experiment_id", "optimizer", "sampler", name="uq_tuner_rankings_config"),
    )
    op.create_table(
        "tuner_improvements",
        sa.Column("id", sa.Integer, primary_key=True),
        _experiment_id(),
        sa.Column("optimizer", sa.String(32), nullable=False),
        sa.Column("sampler", sa.String(32), nullable=False),
        sa.Column("other_optimizer", sa.String(32), nullable=False),
        sa.Column("other_sampler", sa.String(32), nullable=False),
        sa.Column("probability", DOUBLE, nullable=False),
        sa.Column("low", DOUBLE, nullable=False),
        sa.Column("high", DOUBLE, nullable=False),
        sa.UniqueConstraint("experiment_id", "optimizer", "sampler", "other_optimizer", "other_sampler",
                            name="uq_tuner_improvements_pair"),
    )


def downgrade() -> None:
    op.drop_table("tuner_improvements")
    op.drop_table("tuner_rankings")
