"""Analyses that Optuna does for us, on an experiment's own Optuna studies, read-only."""

import optuna

from tuner.storage import queries
from tuner.storage.engine import reader_engine

MIN_TRIALS = 3
"""fANOVA needs at least this many completed trials."""
IMPORTANCE_TRIALS = 1_000
"""fANOVA runs on at most this many completed trials of an optimizer, evenly spread over its
trials in creation order (``queries.sampled_trials``): its forest's cost grows with the trials
(and Optuna's ``get_trials`` takes seconds per 10,000), while the importances of a handful of
parameters are settled long before 100,000."""
FOREST = {"n_trees": 32, "max_depth": 6}
"""fANOVA's random forest. Optuna's default, 64 trees of depth up to 64, took 31 s on 1,000
trials of five parameters here (2-4 s on 300); 32 trees of depth 6 take 0.2-0.5 s, and on 300
trials of a launched quadratic experiment gave each optimizer the same leading parameter with
importances within 0.01 of the default's."""


def importances(url: str, name: str, optimizer: str) -> dict[str, float]:
    """Optuna's fANOVA parameter importances (``optuna.importance.get_param_importances``, seed 0,
    a FOREST) over up to IMPORTANCE_TRIALS completed trials of every study of ``optimizer`` in
    experiment ``name``, on the parameters as Optuna sampled them, read from Optuna's tables
    (studies deleted with Optuna's tools have none). Empty with fewer than MIN_TRIALS completed
    trials or when no parameter varies. The study that pools the trials, in memory, is made
    without Optuna's INFO line (the dashboard's terminal would print it at every redraw)."""
    engine = reader_engine(url)
    try:
        experiment_id, _ = queries.experiment(engine, name)
        names = [row.study_name for row in queries.studies(engine, experiment_id) if row.optimizer == optimizer]
        sampled = queries.sampled_trials(engine, names, IMPORTANCE_TRIALS)
    finally:
        engine.dispose()
    if len(sampled) < MIN_TRIALS:
        return {}
    known: dict[str, optuna.distributions.BaseDistribution] = {}
    completed = []
    for value, params in sampled:
        for _, text in params.values():
            if text not in known:
                known[text] = optuna.distributions.json_to_distribution(text)
        completed.append(optuna.trial.create_trial(
            value=value, params={p: known[text].to_external_repr(internal) for p, (internal, text) in params.items()},
            distributions={p: known[text] for p, (_, text) in params.items()}))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        pooled = optuna.create_study()  # in memory: the studies of one optimizer share its search space
    finally:
        optuna.logging.set_verbosity(verbosity)
    pooled.add_trials(completed)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0, **FOREST)
        return dict(optuna.importance.get_param_importances(pooled, evaluator=evaluator))
    except (RuntimeError, ValueError):  # no parameter varies across every trial
        return {}
