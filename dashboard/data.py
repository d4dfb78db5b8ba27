"""What the dashboard reads: storage's query functions and tuner's Python face (tuner.api), cached.
Read-only: SQLite is opened with ``mode=ro``, server sessions are read-only.

The engine is cached per storage URL (``st.cache_resource``); results for ``REFRESH_S``
seconds (``st.cache_data``), so a page that redraws while workers run reads fresh rows.
"""

from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dashboard import charts
from tuner import analysis, suite_scores
from tuner.api import StoredExperiment
from tuner.errors import ConfigError
from tuner.objective import Budget
from tuner.rankings import Ranking
from tuner.spec import Experiment, stored_experiment
from tuner.storage import queries
from tuner.storage.engine import check_database, reader_engine, resolve_url
from tuner.tasks import Task, make_task
from tuner.theory import theory_gap as theory_gap_rows
from tuner.tunability import Tunability

REFRESH_S = 5


def storage_url() -> str:
    """TUNER_STORAGE (which ``tuner dashboard --storage`` sets), else the default; never a command
    line argument, which every user of the machine can read."""
    return resolve_url()


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return reader_engine(url)


def _experiment(url: str, name: str) -> StoredExperiment:
    return StoredExperiment(engine(url), name, url)


def problem(url: str) -> str | None:
    """Why ``url`` cannot be shown, as plain text, or None when it can: what the terminal's commands
    answer (``reader_engine``: no file, no server, no database, no tuner tables, ...). Asked at
    every redraw: the engine is cached, and the database may have gone since."""
    try:
        check_database(engine(url), url)
    except ConfigError as exc:
        return str(exc)
    return None


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def experiment_names(url: str) -> list[str]:
    """Every experiment's name, oldest first."""
    return queries.experiment_names(engine(url))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def experiments(url: str) -> pd.DataFrame:
    """One row per experiment: task, budget, trials per state, throughput and time to finish."""
    eng = engine(url)
    return charts.progress(pd.DataFrame(queries.experiments(eng)), queries.finish_times(eng))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def studies(url: str, name: str) -> pd.DataFrame:
    """One row per study: its budget and trials per state (RUNNING and FAIL from Optuna)."""
    return _experiment(url, name).studies().drop(columns="study_name")


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def spec(url: str, name: str) -> Experiment:
    return stored_experiment(queries.experiment(engine(url), name)[1], name)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def trials(url: str, name: str, optimizer: str | None = None) -> pd.DataFrame:
    """Every finished trial run (of ``optimizer``) and its configuration in search-space terms
    (StoredExperiment.trials): a configuration decoded per trial, for the pages that show them."""
    return _experiment(url, name).trials(optimizer)


OUTCOME_KEYS = ("lr", "batch_size")
"""The configuration's numbers that ``trial_outcomes`` reads with each trial's outcome."""


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def trial_outcomes(url: str, name: str) -> pd.DataFrame:
    """Every finished trial run's outcome, its learning rate and batch size, read as columns
    (queries.trial_outcomes: no configuration decoded): what the summaries of every trial read."""
    return queries.trial_outcomes(engine(url), _experiment(url, name).id, OUTCOME_KEYS)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best(url: str, name: str) -> pd.DataFrame:
    """Each optimizer's best configuration (StoredExperiment.best(per_optimizer=True)): the
    tuner_best_configs view, which ranks every trial, read once for the pages that need it."""
    return _experiment(url, name).best(per_optimizer=True)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best_runs(url: str, name: str) -> pd.DataFrame:
    """Per optimizer, the runs that show its best configuration (StoredExperiment.best_runs)."""
    return _experiment(url, name).best_runs(best(url, name))


CURVE_CHUNK = 10_000
"""Runs per ``queries.curves`` call: a database takes a bounded number of values in one IN list."""


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def curves(url: str, run_ids: tuple[int, ...], series: str) -> pd.DataFrame:
    """Long form of one series of the given runs: run_id, step, seconds, value (NaN where not finite)."""
    chunks = [run_ids[k:k + CURVE_CHUNK] for k in range(0, len(run_ids), CURVE_CHUNK)] or [()]
    parts = [queries.curves(engine(url), chunk, series) for chunk in chunks]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def series_names(url: str, name: str) -> list[str]:
    """The curve series this experiment's runs recorded (train_loss, val_loss, val_accuracy, loss)."""
    return _experiment(url, name).series()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def importances(url: str, name: str, optimizer: str) -> dict[str, float]:
    """Optuna's parameter importances over the completed trials of ``optimizer`` (tuner.analysis)."""
    return analysis.importances(url, name, optimizer)


@st.cache_data(ttl=3600, show_spinner=False)
def theory(task: str, options: dict[str, Any]) -> dict[str, float] | None:
    """The quadratic's optimal step sizes and rates; None for other tasks."""
    if task != "quadratic":
        return None
    return make_task(task, options).theory()


@st.cache_resource(show_spinner=False)
def _task(name: str, options: dict[str, Any]) -> Task:
    return make_task(name, options)


def total_steps(spec: Experiment, batch_size: int) -> int:
    """The step budget of a run of ``spec`` with ``batch_size`` (1 for an optimizer without one),
    as tuner.objective counts it: what a steps_to_target miss is scored against."""
    return Budget.of(spec).total_steps(_task(spec.task.name, spec.task.options), batch_size)


def step_budgets(spec: Experiment, trials: pd.DataFrame) -> pd.Series:
    """Each trial's step budget (``total_steps``), by ``trials``' index."""
    sizes = (trials["batch_size"].fillna(1) if "batch_size" in trials else pd.Series(1, index=trials.index)).astype(int)
    return sizes.map({size: total_steps(spec, int(size)) for size in sizes.unique()})


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def ranking(url: str, name: str) -> tuple[pd.DataFrame, Ranking]:
    """The best configurations ranked with their intervals, as ``tuner best`` (StoredExperiment.ranking)."""
    return _experiment(url, name).ranking()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def tunability(url: str, name: str) -> Tunability:
    """What a budget of k trials buys each optimizer and sampler (StoredExperiment.tunability)."""
    return _experiment(url, name).tunability()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def suite_names(url: str) -> list[str]:
    """Every suite with an experiment in the storage (tuner.suite_scores)."""
    return suite_scores.suite_names(engine(url))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def suite_results(url: str, suite: str, unit: str) -> suite_scores.SuiteScores:
    """A suite's times to target, ratios and AlgoPerf scores; ConfigError while it is incomplete."""
    return suite_scores.scores(engine(url), suite, unit)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def theory_gap(url: str, name: str) -> pd.DataFrame:
    """On the quadratic, each optimizer's best configuration against the optimum (tuner.theory.theory_gap);
    empty for other tasks and optimizers without a theory."""
    stored = spec(url, name)
    chosen = best(url, name)
    rows = chosen.astype(object).where(chosen.notna(), None).to_dict("records")
    return pd.DataFrame(theory_gap_rows(stored.task.name, stored.task.options, rows, stored.objective.name))
