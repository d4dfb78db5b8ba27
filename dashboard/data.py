"""Every query the dashboard makes, as DataFrames. Read-only: SQLite is opened with ``mode=ro``.

The engine is cached per storage URL (``st.cache_resource``); results for ``REFRESH_S``
seconds (``st.cache_data``), so a page that redraws while workers run reads fresh rows.
"""

import argparse
import datetime as dt
import json
import sys
from typing import Any

import numpy as np
import optuna
import pandas as pd
import streamlit as st
from sqlalchemy import Engine, String, cast, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from tuner.errors import ConfigError
from tuner.report import best_per_optimizer
from tuner.space import from_config
from tuner.spec import Experiment
from tuner.storage import queries, schema
from tuner.storage.engine import reader_engine, resolve_url
from tuner.tasks import make_task

REFRESH_S = 5
THROUGHPUT_WINDOW = dt.timedelta(minutes=10)
PROGRESS_STATES = ("COMPLETE", "PRUNED", "DIVERGED")
TRIAL_COLUMNS = ("run_id", "optimizer", "sampler", "repeat", "trial_number", "state", "objective", "diverged_at",
                 "steps", "wall_time", "params")


def storage_url(argv: list[str] | None = None) -> str:
    """``--storage`` after ``streamlit run dashboard/app.py --``, else TUNER_STORAGE, else the default."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--storage")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return resolve_url(known.storage)


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return reader_engine(url)


def problem(url: str) -> str | None:
    """Why ``url`` cannot be shown (no file, no tuner tables), or None when it can."""
    try:
        tables = set(inspect(engine(url)).get_table_names())
    except ConfigError as exc:
        return f"{exc}. Create it with `tuner launch studies/quickstart.yaml`."
    except SQLAlchemyError as exc:
        return f"cannot read storage {url!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    if schema.experiments.name not in tables:
        return f"storage {url!r} has no tuner experiments yet. Create one with `tuner launch studies/quickstart.yaml`."
    return None


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def experiment_names(url: str) -> list[str]:
    """Every experiment's name, oldest first."""
    e = schema.experiments
    return [row[0] for row in _rows(engine(url), select(e.c.name).order_by(e.c.created_at, e.c.id))]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def experiments(url: str) -> pd.DataFrame:
    """One row per experiment: task, budget, trials per state, throughput and time to finish."""
    eng = engine(url)
    base = pd.DataFrame(queries.experiments(eng), columns=["name", "task", "created_at", "studies", "done", "total"])
    if base.empty:
        return base
    e, s, r = schema.experiments, schema.studies, schema.runs
    finished = pd.DataFrame(_rows(eng, select(e.c.name, r.c.state, r.c.created_at)
                                  .join(s, s.c.experiment_id == e.c.id).join(r, r.c.study_id == s.c.id)
                                  .where(r.c.kind == "trial")), columns=["name", "state", "finished_at"])
    t, o = queries.optuna_trials, queries.optuna_studies
    live = pd.DataFrame(_rows(eng, select(e.c.name, t.c.state, func.count())
                              .join(s, s.c.experiment_id == e.c.id).join(o, o.c.study_name == s.c.study_name)
                              .join(t, t.c.study_id == o.c.study_id)
                              .where(cast(t.c.state, String).in_(("RUNNING", "FAIL")))
                              .group_by(e.c.name, t.c.state)), columns=["name", "state", "n"])
    live["state"] = live["state"].map(lambda v: str(getattr(v, "name", v)))
    counts = finished.pivot_table(index="name", columns="state", aggfunc="size", fill_value=0)
    running = live.pivot_table(index="name", columns="state", values="n", aggfunc="sum", fill_value=0)
    out = base.set_index("name")
    for state in PROGRESS_STATES:
        out[state.lower()] = counts.get(state, pd.Series(dtype=int)).reindex(out.index, fill_value=0)
    out["running"] = running.get("RUNNING", pd.Series(dtype=int)).reindex(out.index, fill_value=0)
    out["failed"] = running.get("FAIL", pd.Series(dtype=int)).reindex(out.index, fill_value=0)
    out["progress"] = (out["done"] / out["total"].where(out["total"] > 0)).clip(upper=1.0).fillna(0.0)
    rates = _throughput(finished)
    out["trials_per_min"] = rates.reindex(out.index).fillna(0.0)
    remaining = (out["total"] - out["done"]).clip(lower=0)
    out["minutes_left"] = (remaining / out["trials_per_min"].where(out["trials_per_min"] > 0)).where(remaining > 0, 0.0)
    return out.reset_index()


def _throughput(finished: pd.DataFrame) -> pd.Series:
    """Trials finished per minute over the last THROUGHPUT_WINDOW of each experiment's activity."""
    if finished.empty:
        return pd.Series(dtype=float)
    times = pd.to_datetime(finished["finished_at"], utc=True)
    rates = {}
    for name, group in times.groupby(finished["name"]):
        last = group.max()
        recent = group[group > last - THROUGHPUT_WINDOW]
        span = (last - recent.min()).total_seconds() / 60.0
        rates[name] = (len(recent) - 1) / span if span > 0 else 0.0
    return pd.Series(rates, dtype=float)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def studies(url: str, name: str) -> pd.DataFrame:
    """One row per study: its budget and trials per state (RUNNING and FAIL from Optuna)."""
    eng = engine(url)
    experiment_id, _ = queries.experiment(eng, name)
    rows = queries.studies(eng, experiment_id)
    runs = queries.run_states(eng, experiment_id)
    live = queries.optuna_states(eng, [row.study_name for row in rows])
    return pd.DataFrame([
        {"optimizer": row.optimizer, "sampler": row.sampler, "repeat": row.repeat, "trials": row.n_trials,
         **{state.lower(): runs.get(row.id, {}).get(state, 0) for state in PROGRESS_STATES},
         "running": live.get(row.study_name, {}).get("RUNNING", 0),
         "failed": live.get(row.study_name, {}).get("FAIL", 0)}
        for row in rows
    ], columns=["optimizer", "sampler", "repeat", "trials", "complete", "pruned", "diverged", "running", "failed"])


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def spec(url: str, name: str) -> Experiment:
    return queries.experiment(engine(url), name)[1]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def trials(url: str, name: str) -> pd.DataFrame:
    """Every finished trial run: who ran it, how it ended, and its configuration in search-space
    terms (one column per parameter: lr, beta1, schedule, cosine_floor, ...)."""
    e, s, r = schema.experiments, schema.studies, schema.runs
    query = (select(r.c.id.label("run_id"), s.c.optimizer, s.c.sampler, s.c.repeat, r.c.trial_number, r.c.state,
                    r.c.objective, r.c.diverged_at, r.c.steps, r.c.wall_time, r.c.params)
             .join(s, s.c.id == r.c.study_id).join(e, e.c.id == s.c.experiment_id)
             .where(e.c.name == name, r.c.kind == "trial").order_by(s.c.optimizer, s.c.sampler, s.c.repeat,
                                                                     r.c.trial_number))
    frame = pd.DataFrame(_rows(engine(url), query), columns=list(TRIAL_COLUMNS))
    values = pd.DataFrame([from_config(_json(p), steps) for p, steps in zip(frame["params"], frame["steps"],
                                                                            strict=True)], index=frame.index)
    frame["objective"] = frame["objective"].astype(float)
    return frame.join(values.drop(columns=[c for c in values.columns if c in frame.columns]))


def searched_params(trials: pd.DataFrame) -> list[str]:
    """The parameter columns of ``trials`` that take more than one value."""
    return [c for c in trials.columns if c not in TRIAL_COLUMNS and trials[c].nunique(dropna=True) > 1]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best_configs(url: str, name: str) -> list[dict[str, Any]]:
    """Rows of the tuner_best_configs view (one per optimizer and sampler), with the spread over seeds."""
    return queries.best_configs(engine(url), name)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best_runs(url: str, name: str) -> pd.DataFrame:
    """Per optimizer, its best configuration and the runs that show it: the re-evaluations on fresh
    seeds, or the trial itself before any re-evaluation. Columns: optimizer, sampler, source_run_id,
    run_id, seed, state, total_steps."""
    chosen = best_per_optimizer(best_configs(url, name))
    if not chosen:
        return pd.DataFrame(columns=["optimizer", "sampler", "source_run_id", "run_id", "seed", "state",
                                     "total_steps"])
    r = schema.runs
    sources = [row["run_id"] for row in chosen]
    eng = engine(url)
    reevals = pd.DataFrame(_rows(eng, select(r.c.source_run_id, r.c.id, r.c.seed, r.c.state)
                                 .where(r.c.source_run_id.in_(sources), r.c.kind == "reevaluation")),
                           columns=["source_run_id", "run_id", "seed", "state"])
    own = pd.DataFrame(_rows(eng, select(r.c.id, r.c.id, r.c.seed, r.c.state, r.c.steps).where(r.c.id.in_(sources))),
                       columns=["source_run_id", "run_id", "seed", "state", "total_steps"])
    shown = pd.concat([reevals, own[~own["source_run_id"].isin(reevals["source_run_id"])].drop(columns="total_steps")])
    who = pd.DataFrame([{"optimizer": row["optimizer"], "sampler": row["sampler"], "source_run_id": row["run_id"]}
                        for row in chosen])
    out = who.merge(shown, on="source_run_id").merge(own[["source_run_id", "total_steps"]], on="source_run_id")
    return out.sort_values(["optimizer", "seed"]).reset_index(drop=True)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def curves(url: str, run_ids: tuple[int, ...], series: str) -> pd.DataFrame:
    """Long form of one series of the given runs: run_id, step, seconds, value (NaN where not finite)."""
    c = schema.curves
    rows = _rows(engine(url), select(c.c.run_id, c.c.steps, c.c.seconds, c.c["values"])
                 .where(c.c.run_id.in_(run_ids), c.c.series == series)) if run_ids else []
    parts = []
    for run_id, steps, seconds, values in rows:
        steps, seconds, values = _json(steps), _json(seconds), _json(values)
        parts.append(pd.DataFrame({"run_id": run_id, "step": np.asarray(steps, dtype=np.int64),
                                   "seconds": np.asarray(seconds, dtype=float),
                                   "value": np.array([np.nan if v is None else v for v in values], dtype=float)}))
    if not parts:
        return pd.DataFrame({"run_id": [], "step": [], "seconds": [], "value": []})
    return pd.concat(parts, ignore_index=True)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def series_names(url: str, name: str) -> list[str]:
    """The curve series this experiment's runs recorded (train_loss, val_loss, val_accuracy, loss)."""
    e, s, r, c = schema.experiments, schema.studies, schema.runs, schema.curves
    first = (select(r.c.id).join(s, s.c.id == r.c.study_id).join(e, e.c.id == s.c.experiment_id)
             .where(e.c.name == name).order_by(r.c.id).limit(1).scalar_subquery())
    return sorted(row[0] for row in _rows(engine(url), select(c.c.series).where(c.c.run_id == first)))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def importances(url: str, name: str, optimizer: str) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the completed trials of ``optimizer``, from the
    parameters as Optuna sampled them (its own trial_params table). Empty with fewer than 3 trials."""
    eng = engine(url)
    experiment_id, _ = queries.experiment(eng, name)
    names = [row.study_name for row in queries.studies(eng, experiment_id) if row.optimizer == optimizer]
    o, t, p, v = queries.optuna_studies, queries.optuna_trials, queries.optuna_trial_params, queries.optuna_trial_values
    complete = (select(t.c.trial_id).join(o, o.c.study_id == t.c.study_id)
                .where(o.c.study_name.in_(names), cast(t.c.state, String) == "COMPLETE"))
    params = _rows(eng, select(p.c.trial_id, p.c.param_name, p.c.param_value, p.c.distribution_json)
                   .where(p.c.trial_id.in_(complete)))
    values = dict(_rows(eng, select(v.c.trial_id, v.c.value).where(v.c.trial_id.in_(complete))))
    by_trial: dict[int, tuple[dict, dict]] = {}
    for trial_id, param, internal, distribution_json in params:
        distribution = optuna.distributions.json_to_distribution(distribution_json)
        chosen, distributions = by_trial.setdefault(trial_id, ({}, {}))
        chosen[param] = distribution.to_external_repr(internal)
        distributions[param] = distribution
    frozen = [optuna.trial.create_trial(params=p, distributions=d, value=values[i])
              for i, (p, d) in by_trial.items() if values.get(i) is not None]
    if len(frozen) < 3:
        return {}
    study = optuna.create_study()
    study.add_trials(frozen)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # no parameter varies across every trial
        return {}


@st.cache_data(ttl=3600, show_spinner=False)
def theory(task: str, options: dict[str, Any]) -> dict[str, float] | None:
    """The quadratic's optimal step sizes and rates; None for other tasks."""
    if task != "quadratic":
        return None
    return make_task(task, options).theory()


def _rows(eng: Engine, query: Any) -> list[tuple]:
    with eng.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
