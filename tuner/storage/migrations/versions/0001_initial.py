"""tuner's first schema: experiments, studies, runs, curves and the best-configs view.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuner_experiments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(512), nullable=False, unique=True),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tuner_studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("tuner_experiments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("study_name", sa.String(512), nullable=False, unique=True),
        sa.Column("optimizer", sa.String(32), nullable=False),
        sa.Column("sampler", sa.String(32), nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.UniqueConstraint("experiment_id", "optimizer", "sampler", "repeat", name="uq_tuner_studies_slot"),
    )
    op.create_table(
        "tuner_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("tuner_studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("optuna_trial_id", sa.Integer, unique=True),
        sa.Column("trial_number", sa.Integer),
        sa.Column("source_run_id", sa.Integer, sa.ForeignKey("tuner_runs.id", ondelete="CASCADE")),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("objective", sa.Double()),
        sa.Column("final_train_loss", sa.Double()),
        sa.Column("best_train_loss", sa.Double()),
        sa.Column("final_val_loss", sa.Double()),
        sa.Column("best_val_loss", sa.Double()),
        sa.Column("final_val_accuracy", sa.Double()),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("wall_time", sa.Double(), nullable=False),
        sa.Column("steps", sa.BigInteger, nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.Column("diverged_at", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_run_id", "seed", name="uq_tuner_runs_reevaluation"),
    )
    op.create_index("ix_tuner_runs_study_id", "tuner_runs", ["study_id"])
    op.create_index("ix_tuner_runs_source_run_id", "tuner_runs", ["source_run_id"])
    op.create_table(
        "tuner_curves",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("tuner_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("series", sa.String(32), nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("seconds", sa.JSON, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.UniqueConstraint("run_id", "series", name="uq_tuner_curves_series"),
    )
    op.execute(BEST_CONFIGS_SQL_0001)


def downgrade() -> None:
    op.execute("DROP VIEW tuner_best_configs")
    for table in ("tuner_curves", "tuner_runs", "tuner_studies", "tuner_experiments"):
        op.drop_table(table)


# The view as this revision defines it; later revisions replace it, never edit this text.
BEST_CONFIGS_SQL_0001 = """
CREATE VIEW tuner_best_configs AS
WITH candidates AS (
    SELECT r.id AS run_id, s.experiment_id, s.optimizer, s.sampler, s.repeat, r.trial_number,
           r.objective, r.params,
           (SELECT AVG(e.objective) FROM tuner_runs e
             WHERE e.source_run_id = r.id AND e.state = 'COMPLETE') AS reeval_mean,
           (SELECT MIN(e.objective) FROM tuner_runs e
             WHERE e.source_run_id = r.id AND e.state = 'COMPLETE') AS reeval_min,
           (SELECT MAX(e.objective) FROM tuner_runs e
             WHERE e.source_run_id = r.id AND e.state = 'COMPLETE') AS reeval_max,
           (SELECT COUNT(*) FROM tuner_runs e
             WHERE e.source_run_id = r.id AND e.state = 'COMPLETE') AS reeval_count,
           (SELECT COUNT(*) FROM tuner_runs e
             WHERE e.source_run_id = r.id AND e.state = 'DIVERGED') AS reeval_diverged
      FROM tuner_runs r
      JOIN tuner_studies s ON s.id = r.study_id
     WHERE r.kind = 'trial' AND r.state = 'COMPLETE'
),
ranked AS (
    SELECT c.*,
           ROW_NUMBER() OVER (
               PARTITION BY c.experiment_id, c.optimizer, c.sampler
               ORDER BY CASE WHEN c.reeval_count > 0 THEN 0 ELSE 1 END,
                        c.reeval_mean, c.objective, c.run_id
           ) AS position
      FROM candidates c
)
SELECT x.name AS experiment, ranked.optimizer, ranked.sampler, ranked.repeat, ranked.trial_number,
       ranked.run_id, ranked.objective AS trial_objective, ranked.reeval_mean, ranked.reeval_min,
       ranked.reeval_max, ranked.reeval_count, ranked.reeval_diverged, ranked.params
  FROM ranked
  JOIN tuner_experiments x ON x.id = ranked.experiment_id
 WHERE ranked.position = 1
"""
