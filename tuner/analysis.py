"""Analyses that Optuna does for us, on an experiment's own Optuna studies, read-only."""

import optuna

from tuner.storage import queries
from tuner.storage.engine import engine_kwargs, is_sqlite, reader_engine, sqlite_reader

MIN_TRIALS = 3
"""fANOVA needs at least this many completed trials."""


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage over ``url``, for reading: no table creation; SQLite opened read-only as
    every reader opens it (``sqlite_reader``), so nothing can write the file. (On a server,
    Optuna's RDBStorage writes only if its version rows are missing, which a tuner storage
    always has.)"""
    if is_sqlite(url):
        return optuna.storages.RDBStorage("sqlite://", engine_kwargs={"creator": sqlite_reader(url)},
                                          skip_table_creation=True)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=True)


def importances(url: str, name: str, optimizer: str) -> dict[str, float]:
    """Optuna's fANOVA parameter importances (``optuna.importance.get_param_importances``, seed 0)
    over the completed trials of every study of ``optimizer`` in experiment ``name``, on the
    parameters as Optuna sampled them. Empty with fewer than MIN_TRIALS completed trials or when
    no parameter varies. The study that pools the trials, in memory, is made without Optuna's
    INFO line (the dashboard's terminal would print it at every redraw)."""
    engine = reader_engine(url)
    try:
        experiment_id, _ = queries.experiment(engine, name)
        names = [row.study_name for row in queries.studies(engine, experiment_id) if row.optimizer == optimizer]
        names = list(queries.optuna_study_ids(engine, names))  # less any deleted with Optuna's tools
    finally:
        engine.dispose()
    storage = optuna_storage(url)
    try:
        completed = [trial for study_name in names
                     for trial in optuna.load_study(study_name=study_name, storage=storage)
                     .get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    finally:
        storage.engine.dispose()
    if len(completed) < MIN_TRIALS:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        pooled = optuna.create_study()  # in memory: the studies of one optimizer share its search space
    finally:
        optuna.logging.set_verbosity(verbosity)
    pooled.add_trials(completed)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(pooled, evaluator=evaluator))
    except (RuntimeError, ValueError):  # no parameter varies across every trial
        return {}
