"""tuner's tables, beside Optuna's own in the same database. Changed only by migrations.

tuner_experiments   one row per study file name: the validated spec as JSON, and the version of
                    its format (spec_version: see ``tuner.worker.SPEC_VERSION``)
tuner_studies       one row per Optuna study: experiment, optimizer, sampler, repeat, budget
tuner_runs          one row per finished training run: a trial (kind 'trial', keyed by Optuna's
                    trial id) or a re-evaluation of a study's best trial on a fresh seed
                    (kind 'reevaluation', source_run_id = that trial's run)
tuner_curves        one row per run and series (train_loss, val_loss, val_accuracy, loss): its
                    points as three BLOBs (see "Curves" below), at most ``records.MAX_POINTS``
tuner_best_configs  view: the best configuration per experiment, optimizer and sampler
tuner_rankings      per experiment, optimizer and sampler: its best configuration's tied rank and
                    the mean and median objective over its re-evaluation runs with 95% bootstrap
                    intervals (``tuner.rankings``), written when the re-evaluations are done
tuner_improvements  per experiment and ordered pair of (optimizer, sampler): P(a run of the first
                    scores lower than a run of the other), with its 95% interval

Curves: ``steps`` little-endian int32 (int64 when a step is beyond int32's range: its length
then is 8 bytes per value), ``seconds`` float32 since the run started, ``values`` float64 with
NaN where not finite (``records.encoded`` and ``records.decoded``; readers and ``records.Curve``
get NaN). Values stay exact: ``tuner.suite_scores`` finds times to target in them.
Until revision 0006 they were JSON arrays of up to 500 points: a quadratic trial of 300 steps
evaluated at every step (train_loss and loss, 300 points each) took 23 KB of curves on SQLite
(19 KB on PostgreSQL, 44 KB on MariaDB), and 100,000 such trials 2.4 GB with Optuna's rows.
Now a series keeps ``records.MAX_POINTS`` = 120 points, 1,920 bytes, and two rows share a 4 KiB
SQLite page: 4.1 KB of curves per trial (4.2 KB on PostgreSQL, 4.8 KB on MariaDB), 5.2 KB with
tuner_runs and Optuna's rows (about 1 KB), so 100,000 trials take about 0.52 GB (measured:
5,000 such runs written by ``write_runs``, Optuna's rows by launches of 500 and 1,500 trials;
in a launch where a third of the trials diverged early, 3.7 KB per trial, against 16 KB in
JSON). Not fewer bytes per point: a downsampled series is not evenly spaced in steps (no
stride to store instead), and deltas or compression need a loop per row to read, where
``decoded`` reads all rows with one ``np.frombuffer`` per column (100,000 runs' series in
about 0.5 s). Converted from JSON (and back) by migration 0006.

Names (tuner_experiments.name, tuner_studies.study_name) compare exactly on every database: on
MariaDB/MySQL they have a binary NO PAD collation, as Optuna's study names there (migration 0004).
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()
DOUBLE = Double()  # 8 bytes everywhere (a plain Float is 4 bytes on MariaDB)

experiments = Table(
    "tuner_experiments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("task", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("spec_version", Integer, nullable=False, server_default="1"),  # rows from before 0003: 1
)

studies = Table(
    "tuner_studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("experiment_id", Integer, ForeignKey("tuner_experiments.id", ondelete="CASCADE"), nullable=False),
    Column("study_name", String(512), nullable=False, unique=True),
    Column("optimizer", String(32), nullable=False),
    Column("sampler", String(32), nullable=False),
    Column("repeat", Integer, nullable=False),
    Column("n_trials", Integer, nullable=False),
    UniqueConstraint("experiment_id", "optimizer", "sampler", "repeat", name="uq_tuner_studies_slot"),
)

runs = Table(
    "tuner_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("tuner_studies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("optuna_trial_id", Integer, unique=True),
    Column("trial_number", Integer),
    Column("source_run_id", Integer, ForeignKey("tuner_runs.id", ondelete="CASCADE"), index=True),
    Column("seed", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("objective", DOUBLE),
    Column("final_train_loss", DOUBLE),
    Column("best_train_loss", DOUBLE),
    Column("final_val_loss", DOUBLE),
    Column("best_val_loss", DOUBLE),
    Column("final_val_accuracy", DOUBLE),
    Column("params", JSON, nullable=False),
    Column("wall_time", DOUBLE, nullable=False),
    Column("steps", BigInteger, nullable=False),
    Column("samples", BigInteger, nullable=False),
    Column("diverged_at", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source_run_id", "seed", name="uq_tuner_runs_reevaluation"),
)

curves = Table(
    "tuner_curves",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("tuner_runs.id", ondelete="CASCADE"), nullable=False),
    Column("series", String(32), nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("seconds", LargeBinary, nullable=False),
    Column("values", LargeBinary, nullable=False),
    UniqueConstraint("run_id", "series", name="uq_tuner_curves_series"),
)


def _experiment_id() -> Column:
    """tuner_rankings' and tuner_improvements' experiment."""
    return Column("experiment_id", Integer, ForeignKey("tuner_experiments.id", ondelete="CASCADE"), nullable=False)


rankings = Table(
    "tuner_rankings",
    metadata,
    Column("id", Integer, primary_key=True),
    _experiment_id(),
    Column("optimizer", String(32), nullable=False),
    Column("sampler", String(32), nullable=False),
    Column("rank", String(16), nullable=False),
    Column("runs", Integer, nullable=False),
    Column("diverged_runs", Integer, nullable=False),
    *(Column(name, DOUBLE) for name in ("mean", "mean_low", "mean_high", "median", "median_low", "median_high")),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("experiment_id", "optimizer", "sampler", name="uq_tuner_rankings_config"),
)

improvements = Table(
    "tuner_improvements",
    metadata,
    Column("id", Integer, primary_key=True),
    _experiment_id(),
    Column("optimizer", String(32), nullable=False),
    Column("sampler", String(32), nullable=False),
    Column("other_optimizer", String(32), nullable=False),
    Column("other_sampler", String(32), nullable=False),
    Column("probability", DOUBLE, nullable=False),
    Column("low", DOUBLE, nullable=False),
    Column("high", DOUBLE, nullable=False),
    UniqueConstraint("experiment_id", "optimizer", "sampler", "other_optimizer", "other_sampler",
                     name="uq_tuner_improvements_pair"),
)

BEST_CONFIGS_VIEW = "tuner_best_configs"
"""Per experiment, optimizer and sampler: the completed trial whose configuration did best on
re-evaluation (lowest mean objective over fresh seeds), or, before any re-evaluation, the best
trial. Columns: experiment, optimizer, sampler, repeat, trial_number, run_id, trial_objective,
reeval_mean, reeval_min, reeval_max, reeval_count, reeval_diverged, params. Its SQL lives in the
migration that creates it (plain SQL: SQLite >= 3.25, PostgreSQL, MariaDB >= 10.2)."""
