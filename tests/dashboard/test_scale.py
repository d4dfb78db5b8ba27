"""The pages on an experiment of thousands of trials (written by tests/dashboard/synthetic.py, not
launched): what they draw is computed in SQL and numpy, thinned, sampled or drawn by WebGL, and
still equals a brute-force computation over every trial and curve."""

import base64

import numpy as np
import optuna
import pandas as pd
import pytest

from dashboard import charts
from tests.dashboard.synthetic import fill
from tests.dashboard.test_pages import array, figures, open_page, widget
from tuner import analysis
from tuner.spec import parse_experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.records import COMPLETE
from tuner.storage.store import Store

WIDE = {
    "name": "wide",
    "task": {"name": "quadratic", "options": {"dim": 5}},
    "optimizers": ["sgd", "momentum", "adam"],
    "samplers": ["random", "qmc"],
    "repeats": 3,
    "trials": 400,
    "budget": {"steps": 200, "eval_every": 20},
    "space": {"schedule": "constant"},
    "objective": {"name": "final_train_loss"},
    "reevaluate": 4,
}
"""7,200 trials: 2,400 per optimizer, over every threshold of the pages (WEBGL_POINTS, FAINT_LINES, PARALLEL_LINES)."""


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('wide')}/tuner.db"
    store = Store.open(url, heartbeat=False)
    try:
        assert fill(store, parse_experiment(WIDE)) == 7_200
    finally:
        store.close()
    return url


@pytest.fixture(scope="module")
def every_trial(wide) -> pd.DataFrame:
    """Every trial as the per-trial query decodes it (configurations included): the brute force's input."""
    engine = reader_engine(wide)
    try:
        return queries.trials(engine, queries.experiment(engine, "wide")[0])
    finally:
        engine.dispose()


def test_outcomes_read_as_columns_equal_the_trials_decoded_one_by_one(wide, every_trial) -> None:
    engine = reader_engine(wide)
    try:
        outcomes = queries.trial_outcomes(engine, queries.experiment(engine, "wide")[0], ("lr", "batch_size"))
    finally:
        engine.dispose()
    assert list(outcomes.columns) == [*queries.OUTCOME_COLUMNS, "lr", "batch_size"] and len(outcomes) == 7_200
    for column in queries.OUTCOME_COLUMNS:
        pd.testing.assert_series_equal(outcomes[column], every_trial[column], check_dtype=False)
    np.testing.assert_allclose(outcomes["lr"], [p["lr"] for p in every_trial["params"]], rtol=1e-15)
    assert outcomes["batch_size"].isna().all()  # a synthetic task has no batches


def test_importances_sample_optunas_completed_trials_evenly(wide) -> None:
    engine = reader_engine(wide)
    names = [f"wide/adam/{sampler}/{repeat}" for sampler in WIDE["samplers"] for repeat in range(3)]
    try:
        sampled = queries.sampled_trials(engine, names, 500)
        every = queries.sampled_trials(engine, names, 10**6)
    finally:
        engine.dispose()
    storage = optuna.storages.RDBStorage(wide, skip_table_creation=True)
    completed = sorted(  # in creation order (trial ids), by Optuna's public storage API
        (storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), t.number), t)
        for name in names
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    storage.engine.dispose()
    assert len(every) == len(completed) > 500 and len(sampled) == 500
    for (value, params), (_, trial) in zip(every, completed, strict=True):
        assert value == trial.value
        assert {k: trial.distributions[k].to_external_repr(v) for k, (v, _) in params.items()} == trial.params
    picked = np.unique(np.linspace(0, len(every) - 1, 500).round().astype(int))
    assert sampled == [every[i] for i in picked]  # evenly spread, first and last included
    found = analysis.importances(wide, "wide", "adam")
    assert set(found) <= {"lr", "one_minus_beta1", "one_minus_beta2", "eps"} and max(found, key=found.get) == "lr"


def brute_best_so_far(trials: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Per optimizer, sampler and trial k: pandas' median and quartiles over the repeats of the
    lowest completed objective among each repeat's first k trials (+inf before the first)."""
    rows = []
    for (optimizer, sampler, _), study in trials.groupby(["optimizer", "sampler", "repeat"]):
        best = np.inf
        for k, (_, trial) in enumerate(study.sort_values("trial_number").iterrows(), start=1):
            if trial["state"] == COMPLETE:
                best = min(best, trial["objective"])
            if k <= budget:
                rows.append({"optimizer": optimizer, "sampler": sampler, "trial": k, "value": best})
    grouped = pd.DataFrame(rows).groupby(["optimizer", "sampler", "trial"])["value"]
    out = pd.DataFrame({"median": grouped.median(), "lo": grouped.quantile(0.25), "hi": grouped.quantile(0.75)})
    return out.replace(np.inf, np.nan).reset_index()


def test_samplers_draw_the_brute_force_best_so_far_through_few_points(monkeypatch, wide, every_trial) -> None:
    app = open_page(monkeypatch, wide, "samplers", "wide")
    (figure,) = figures(app)
    expected = brute_best_so_far(every_trial, WIDE["trials"])
    panels = [a["text"] for a in figure["layout"]["annotations"]]
    assert panels == ["sgd", "momentum", "adam"]  # OPTIMIZERS' order
    traces = figure["data"]
    medians = [i for i, t in enumerate(traces) if t.get("line", {}).get("width") == 2]
    assert len(medians) == 6
    for i in medians:  # each band's traces: upper edge, lower edge, median
        optimizer, sampler = traces[i]["hovertemplate"].split("<br>")[0].split(" · ")
        full = expected[(expected["optimizer"] == optimizer) & (expected["sampler"] == sampler)]
        x = array(traces[i], "x")
        assert x[0] == 1 and x[-1] == WIDE["trials"] and len(x) < WIDE["trials"] / 4  # thinned
        for column, trace in (("median", traces[i]), ("lo", traces[i - 1]), ("hi", traces[i - 2])):
            drawn = np.array([np.nan if v is None else v for v in array(trace, "y")], dtype=float)
            np.testing.assert_array_equal(np.interp(full["trial"], x, drawn), full[column])
    (table,) = (t.value for t in app.dataframe)
    for row in table.itertuples():
        base = expected[(expected["optimizer"] == row.optimizer) & (expected["sampler"] == "random")]
        own = expected[(expected["optimizer"] == row.optimizer) & (expected["sampler"] == row.sampler)]
        hits = own.loc[own["median"] <= base["median"].iloc[-1], "trial"]
        assert row[3] == charts.sci(base["median"].iloc[-1])
        assert row[4] == (str(hits.iloc[0]) if len(hits) else "-")


def test_convergence_bands_and_every_trials_density_equal_the_brute_force(monkeypatch, wide, every_trial) -> None:
    app = open_page(monkeypatch, wide, "convergence", "wide")
    assert widget(app.selectbox, "metric").value == "loss" and widget(app.radio, "x axis").value == "steps"
    engine = reader_engine(wide)
    try:
        best = queries.best_configs(engine, "wide", per_optimizer=True)
        runs = queries.config_runs(engine, [row["run_id"] for row in best])
        curves = queries.curves(engine, list(runs["run_id"]), "loss")
        adam = every_trial[every_trial["optimizer"] == "adam"]
        every_adam = queries.curves(engine, list(adam["run_id"]), "loss")
    finally:
        engine.dispose()
    assert (runs.groupby("source_run_id").size() == WIDE["reevaluate"]).all()
    optimizer_of = {row["run_id"]: row["optimizer"] for row in best}
    curves["optimizer"] = curves["run_id"].map(dict(zip(runs["run_id"], runs["source_run_id"], strict=True))).map(
        optimizer_of)
    (figure,) = figures(app)
    for trace in [t for t in figure["data"] if t.get("line", {}).get("width") == 2]:
        mine = curves[curves["optimizer"] == trace["name"]].groupby("step")["value"]
        assert array(trace, "x") == list(mine.median().index)
        np.testing.assert_allclose(array(trace, "y"), mine.median(), rtol=1e-12)
    bands = {t["name"]: t for t in figure["data"] if t.get("fill") == "tonexty"}
    assert set(bands) == {"sgd", "momentum", "adam"}
    lower = curves[curves["optimizer"] == "adam"].groupby("step")["value"].quantile(0.25)
    np.testing.assert_allclose(array(bands["adam"], "y"), lower, rtol=1e-12)

    widget(app.selectbox, "every trial of").set_value("adam").run()
    assert not app.exception
    (figure,) = figures(app)
    (density,) = [t for t in figure["data"] if t["type"] == "heatmap"]
    assert density["name"] == "every trial" and len(adam) > charts.FAINT_LINES
    assert any(f"{len(adam)} trials of adam" in c.value for c in app.caption)
    x, y = (np.array(array(density, k), dtype=float) for k in ("x", "y"))
    z = density["z"]  # a typed array of two dimensions
    share = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(
        [int(n) for n in str(z["shape"]).split(",")])
    steps = sorted(every_adam["step"].unique())
    assert list(x) == steps
    values = np.log10(every_adam.loc[every_adam["value"] > 0, "value"])
    edges = np.linspace(values.min(), values.max(), charts.DENSITY_BINS[1] + 1)
    np.testing.assert_allclose(np.log10(y), (edges[:-1] + edges[1:]) / 2)
    for column, step in enumerate(steps):  # every trial's point at each step, in np.histogram's bins
        here = every_adam[(every_adam["step"] == step) & (every_adam["value"] > 0)]
        counts, _ = np.histogram(np.log10(here["value"]), bins=edges)
        np.testing.assert_allclose(np.nan_to_num(share[:, column]), counts / counts.sum(), atol=1e-12)


def test_sensitivity_draws_every_cell_of_every_trial_by_webgl(monkeypatch, wide, every_trial) -> None:
    monkeypatch.setattr(charts, "WEBGL_POINTS", 500)  # this experiment's occupied cells are fewer than the real limit
    app = open_page(monkeypatch, wide, "sensitivity", "wide")
    assert len(figures(app)) == 3, "parallel coordinates of thousands of trials are drawn when asked"
    (toggle,) = app.toggle
    assert toggle.value is False
    toggle.set_value(True).run()
    lr, coloured, importance, parallel = figures(app)
    assert {t["type"] for t in lr["data"]} == {"scattergl"}
    points = {t["name"]: set(zip(array(t, "x"), array(t, "y"), strict=True)) for t in lr["data"]}
    drawn = sum(len(p) for p in points.values())
    assert drawn > charts.WEBGL_POINTS and f"{drawn:,} of 7,200 trials drawn" in lr["layout"]["title"]["text"]
    done = every_trial[every_trial["state"] == COMPLETE].assign(lr=lambda f: [p["lr"] for p in f["params"]])

    def cell(x: float, y: float, low: tuple[float, float], span: tuple[float, float]) -> tuple[int, int]:
        return tuple(min(int((np.log10(v) - lo) / s * n), n - 1)
                     for v, lo, s, n in zip((x, y), low, span, charts.CELLS, strict=True))

    objectives = np.log10(done["objective"])
    lrs = np.log10(every_trial.loc[every_trial["state"].isin([COMPLETE, "DIVERGED"]), "params"].map(lambda p: p["lr"]))
    low = (lrs.min(), objectives.min())  # the grid spans every point drawn, diverged ones on the top edge
    span = (lrs.max() - lrs.min(), objectives.max() - objectives.min())
    for optimizer, mine in done.groupby("optimizer"):  # every occupied cell has its first trial drawn, no other
        first = {}
        for x, y in zip(mine["lr"], mine["objective"], strict=True):
            first.setdefault(cell(x, y, low, span), (x, y))
        assert points[optimizer] == set(first.values())
    assert {t["type"] for t in coloured["data"]} <= {"scattergl", "scatter"}
    assert importance["data"][0]["type"] == "bar" and "lr" in importance["data"][0]["y"]
    (lines,) = parallel["data"]
    assert lines["type"] == "parcoords" and len(array(lines["line"], "color")) == charts.PARALLEL_LINES
    completed = len(done[done["optimizer"] == "adam"])  # the first optimizer offered
    assert f"1,000 of {completed:,} completed trials" in parallel["layout"]["title"]["text"]


@pytest.mark.e2e
def test_outcomes_sampled_trials_and_pages_on_a_server(server_url, monkeypatch) -> None:
    """The columns read by the database (the configuration's lr as a float: each server's JSON
    functions) and Optuna's sampled trials, on PostgreSQL and MariaDB; the pages that read them."""
    spec = parse_experiment({**WIDE, "optimizers": ["sgd", "adam"], "repeats": 1, "trials": 150, "reevaluate": 2})
    store = Store.open(server_url, heartbeat=False)
    try:
        fill(store, spec)
    finally:
        store.close()
    engine = reader_engine(server_url)
    try:
        experiment_id = queries.experiment(engine, "wide")[0]
        outcomes = queries.trial_outcomes(engine, experiment_id, ("lr", "batch_size"))
        decoded = queries.trials(engine, experiment_id)
        sampled = queries.sampled_trials(engine, ["wide/adam/random/0", "wide/adam/qmc/0"], 100)
    finally:
        engine.dispose()
    for column in queries.OUTCOME_COLUMNS:
        pd.testing.assert_series_equal(outcomes[column], decoded[column], check_dtype=False)
    np.testing.assert_allclose(outcomes["lr"], [p["lr"] for p in decoded["params"]], rtol=1e-15)
    assert outcomes["batch_size"].isna().all() and len(sampled) == 100
    adam = decoded[(decoded["optimizer"] == "adam") & (decoded["state"] == COMPLETE)]
    assert {value for value, _ in sampled} <= set(adam["objective"])
    assert analysis.importances(server_url, "wide", "adam")
    from dashboard import data

    for page in ("convergence", "samplers", "sensitivity"):
        assert len(figures(open_page(monkeypatch, server_url, page, "wide"))) >= 1
    data.engine(server_url).dispose()
