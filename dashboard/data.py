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
from tuner import analysis
from tuner.api import StoredExperiment
from tuner.errors import ConfigError
from tuner.spec import Experiment, stored_experiment
from tuner.storage import queries
from tuner.storage.engine import check_database, reader_engine, resolve_url
from tuner.tasks import make_task

REFRESH_S = 5


def storage_url() -> str:
    """TUNER_STORAGE (which ``tuner dashboard --storage`` sets), else the default; never a command
    line argument, which every user of the machine can read."""
    return resolve_url()


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return reader_engine(url)


def _experiment(url: str, name: str) -> StoredExperiment:
    return StoredExperiment(engine(url), name)


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
def trials(url: str, name: str) -> pd.DataFrame:
    """Every finished trial run and its configuration in search-space terms (StoredExperiment.trials)."""
    return _experiment(url, name).trials()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best_configs(url: str, name: str) -> list[dict[str, Any]]:
    """Rows of the tuner_best_configs view (one per optimizer and sampler), best first, with the spread over seeds."""
    return queries.best_configs(engine(url), name)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def best_runs(url: str, name: str) -> pd.DataFrame:
    """Per optimizer, the runs that show its best configuration (StoredExperiment.best_runs)."""
    return _experiment(url, name).best_runs()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def curves(url: str, run_ids: tuple[int, ...], series: str) -> pd.DataFrame:
    """Long form of one series of the given runs: run_id, step, seconds, value (NaN where not finite)."""
    return queries.curves(engine(url), run_ids, series)


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
