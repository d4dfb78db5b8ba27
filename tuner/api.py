"""tuner's Python face: an experiment's results as pandas DataFrames, read-only.

    import tuner

    with tuner.open_experiment("quickstart", storage="sqlite:///tuner.db") as exp:
        exp.best()                       # the tuner_best_configs view: best per optimizer and sampler
        exp.trials()                     # every finished trial, one column per searched parameter
        exp.curves("val_loss")           # the runs behind each optimizer's best configuration

The same calls build ``tuner best`` and the dashboard's pages.
"""

from typing import Any

import pandas as pd
from sqlalchemy import Engine

from tuner.errors import ConfigError
from tuner.rankings import Ranking, best_ranked
from tuner.space import from_config
from tuner.storage import queries
from tuner.storage.engine import reader_engine, resolve_url
from tuner.storage.records import DONE_STATES
from tuner.tunability import Tunability, tunability
from tuner.urls import shown

BEST_RUN_COLUMNS = ["optimizer", "sampler", "source_run_id", "run_id", "seed", "state", "total_steps"]


class StoredExperiment:
    """One experiment in a storage. Every method reads the database afresh."""

    def __init__(self, engine: Engine, name: str, url: str | None = None) -> None:
        """``engine``: a reader engine, owned by the caller (see ``open_experiment``), of ``url`` (the
        storage as given, for ``repr``: a read-only SQLite engine's own URL has no path); ConfigError
        if the storage has no experiment ``name``."""
        self.engine = engine
        self.name = name
        self.url = url or self.engine.url.render_as_string(hide_password=False)
        self.id, self.spec = queries.experiment(engine, name)
        """``spec``: the validated study file as a dict (``tuner.spec.Experiment(**spec)`` for the model)."""

    def studies(self) -> pd.DataFrame:
        """One row per Optuna study: optimizer, sampler, repeat, trials (its budget), finished trial
        runs per finished state (complete, pruned, diverged) and from Optuna running and failed."""
        rows = queries.studies(self.engine, self.id)
        runs = queries.run_states(self.engine, self.id)
        live = queries.optuna_states(self.engine, [row.study_name for row in rows])
        return pd.DataFrame([
            {"study_name": row.study_name, "optimizer": row.optimizer, "sampler": row.sampler, "repeat": row.repeat,
             "trials": row.n_trials, **{state.lower(): runs.get(row.id, {}).get(state, 0) for state in DONE_STATES},
             "running": live.get(row.study_name, {}).get("RUNNING", 0),
             "failed": live.get(row.study_name, {}).get("FAIL", 0)}
            for row in rows
        ], columns=["study_name", "optimizer", "sampler", "repeat", "trials",
                    *(state.lower() for state in DONE_STATES), "running", "failed"])

    def trials(self, optimizer: str | None = None) -> pd.DataFrame:
        """Every finished trial run (of ``optimizer``: queries.TRIAL_COLUMNS: run_id, optimizer,
        sampler, repeat, trial_number, state, objective, diverged_at, steps, wall_time, params) and
        its configuration in search-space terms, one column per parameter (lr, beta1, schedule, ...;
        NaN where an optimizer has no such parameter)."""
        frame = queries.trials(self.engine, self.id, optimizer)
        values = pd.DataFrame([from_config(p, steps) for p, steps in zip(frame["params"], frame["steps"], strict=True)],
                              index=frame.index)
        return frame.join(values.drop(columns=[c for c in values.columns if c in frame.columns]))

    def best(self, optimizer: str | None = None, sampler: str | None = None, *,
             per_optimizer: bool = False) -> pd.DataFrame:
        """The best configurations, best first: the rows of the tuner_best_configs view (one per
        optimizer and sampler; with ``per_optimizer``, one per optimizer), as ``tuner best`` prints
        them. See ``queries.best_configs`` for the columns and ``queries.BEST_ORDER`` for the rule."""
        rows = queries.best_configs(self.engine, self.name, optimizer, sampler, per_optimizer=per_optimizer)
        return pd.DataFrame(rows)

    def ranking(self, optimizer: str | None = None, sampler: str | None = None, *,
                per_optimizer: bool = False) -> tuple[pd.DataFrame, Ranking]:
        """``best`` with each row's tied rank and the mean and median over its re-evaluation runs
        with 95% bootstrap intervals, as ``tuner best`` prints them (``rankings.best_ranked``),
        and the Ranking (every pair's probability of improvement, a note on what n cannot tell)."""
        rows, ranking = best_ranked(self.engine, self.name, optimizer, sampler, per_optimizer=per_optimizer)
        return pd.DataFrame(rows), ranking

    def tunability(self) -> Tunability:
        """What a budget of k trials buys each optimizer and sampler (``tuner.tunability``)."""
        return tunability(self.engine, self.name)

    def best_runs(self, best: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per optimizer, the runs that show its best configuration: the re-evaluations on fresh
        seeds, or the trial itself before any. Columns: BEST_RUN_COLUMNS, by optimizer and seed.
        ``best``: ``best(per_optimizer=True)`` as already read, else it is read."""
        chosen = queries.best_configs(self.engine, self.name, per_optimizer=True) if best is None else best.to_dict(
            "records")
        who = pd.DataFrame([{"optimizer": row["optimizer"], "sampler": row["sampler"], "source_run_id": row["run_id"]}
                            for row in chosen], columns=BEST_RUN_COLUMNS[:3])
        runs = queries.config_runs(self.engine, list(who["source_run_id"]))
        return who.merge(runs, on="source_run_id")[BEST_RUN_COLUMNS].sort_values(["optimizer", "seed"]).reset_index(
            drop=True)

    def series(self) -> list[str]:
        """The curve series this experiment records: train_loss and val_loss (data tasks), with
        val_accuracy (classification tasks), or loss (synthetic tasks)."""
        return queries.series_names(self.engine, self.id)

    def curves(self, series: str = "train_loss", run_ids: list[int] | None = None,
               optimizer: str | None = None) -> pd.DataFrame:
        """Long form of one curve series: run_id, step, seconds, value. Of the runs ``run_ids``;
        else of every trial of ``optimizer``, with its trial columns; else of the runs behind
        each optimizer's best configuration, with the ``best_runs`` columns."""
        known = self.series()
        if known and series not in known:
            raise ConfigError(f"series={series!r} is not recorded in experiment {self.name!r}; "
                              f"allowed: {', '.join(known)}")
        if run_ids is not None:
            return queries.curves(self.engine, run_ids, series)
        if optimizer is not None:
            trials = queries.trials(self.engine, self.id)
            runs = trials[trials["optimizer"] == optimizer].drop(columns="params")
        else:
            runs = self.best_runs()
        curves = queries.curves(self.engine, [int(i) for i in runs["run_id"]], series)
        if curves.empty:  # nothing finished yet (or every run diverged before its first point)
            return curves.reindex(columns=[*curves.columns, *(c for c in runs.columns if c not in curves.columns)])
        return curves.merge(runs, on="run_id")

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "StoredExperiment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        """Its name and storage, the storage's secrets masked (``tuner.urls.shown``)."""
        return f"StoredExperiment({self.name!r}, {shown(self.url)!r})"


def open_experiment(name: str, storage: str | None = None) -> StoredExperiment:
    """The experiment ``name`` of ``storage`` (a database URL; default as the CLI's ``--storage``:
    $TUNER_STORAGE, else sqlite:///tuner.db), opened read-only (SQLite ``mode=ro``, server sessions
    read-only). ConfigError, as the terminal's commands answer, for a database that cannot be read
    (``storage.engine.reader_engine``) or an unknown experiment."""
    url = resolve_url(storage)
    engine = reader_engine(url)
    try:
        return StoredExperiment(engine, name, url)
    except BaseException:
        engine.dispose()
        raise


def searched_params(trials: pd.DataFrame) -> list[str]:
    """The parameter columns of a ``trials()`` frame that take more than one value."""
    return [c for c in trials.columns if c not in queries.TRIAL_COLUMNS and trials[c].nunique(dropna=True) > 1]
