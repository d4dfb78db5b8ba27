"""Every page of the dashboard, run with Streamlit's AppTest against real launched experiments."""

import base64
import itertools
import json
import logging.handlers
import re
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data
from dashboard.verbatim import code
from tests.helpers import REPO, TINY, run_rows, tuner, write_study
from tuner import analysis
from tuner.spec import parse_experiment
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.worker import create_experiment, run_worker

APP = str(REPO / "dashboard" / "app.py")
PAGES = tuple(re.findall(r'"views/(\w+)\.py"', (REPO / "dashboard" / "app.py").read_text()))
"""Every page of the app, in its navigation's order (experiments first)."""


def open_page(monkeypatch, url: str, page: str, experiment: str | None = None) -> AppTest:
    monkeypatch.setenv("TUNER_STORAGE", url)
    app = AppTest.from_file(APP, default_timeout=120)
    if experiment:
        app.session_state["experiment"] = experiment
    app.run()
    if page != "experiments":
        app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return app


def figures(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def array(trace: dict, axis: str) -> list:
    """A trace's x or y values; plotly sends numpy arrays as base64 typed arrays."""
    value = trace[axis]
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def names(figure: dict) -> set[str]:
    return {trace.get("name") for trace in figure["data"]}


def widget(elements, label: str):
    return next(e for e in elements if e.label == label)


def test_experiments_lists_progress_and_the_studies(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "experiments", "tiny")
    listing, studies = (table.value for table in app.dataframe)
    assert set(listing["name"]) == {"tiny", "quad"}
    row = listing.set_index("name").loc["tiny"]
    assert (row["total"], row["progress"], row["running"]) == (40, 1.0, 0)
    assert 40 <= row["done"] <= 48  # two workers overshoot a study by at most one trial
    assert len(studies) == 8 and set(studies["optimizer"]) == {"sgd", "adam"}
    assert studies["complete"].sum() + studies["pruned"].sum() + studies["diverged"].sum() == row["done"]
    assert [m.label for m in app.metric] == ["finished trials", "running now", "trials per minute", "time to finish"]
    assert app.metric[3].value == "done"


def test_convergence_draws_each_optimizers_best_with_every_axis_and_metric(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "convergence", "tiny")
    metric = widget(app.selectbox, "metric")
    assert metric.options == ["training loss", "validation loss", "validation accuracy"]
    assert widget(app.radio, "x axis").options == ["epochs", "steps", "wall time"]
    (figure,) = figures(app)
    assert names(figure) == {"sgd", "adam"}
    assert figure["layout"]["yaxis"]["type"] == "log" and figure["layout"]["xaxis"]["title"]["text"] == "epoch"
    last_x = max(max(array(t, "x")) for t in figure["data"])
    assert last_x == pytest.approx(2.0, rel=0.05)  # two epochs of budget

    metric.set_value("val_accuracy")  # the option itself; the label is its formatted form
    widget(app.radio, "x axis").set_value("wall time")
    widget(app.radio, "band over seeds").set_value("min-max")
    widget(app.selectbox, "every trial of").set_value("adam")
    app.run()
    assert not app.exception
    (figure,) = figures(app)
    assert names(figure) == {"sgd", "adam", "every trial"}
    assert figure["layout"]["xaxis"]["title"]["text"] == "seconds"
    faint = next(t for t in figure["data"] if t["name"] == "every trial")
    adam_trials = [r for r in run_rows(reader_engine(storage), "tiny") if r["kind"] == "trial" and r["optimizer"] == "adam"]
    assert sum(x is None for x in array(faint, "x")) == len(adam_trials)  # every trial, each ended by a gap
    widget(app.radio, "x axis").set_value("epochs").run()
    faint = next(t for t in figures(app)[0]["data"] if t["name"] == "every trial")
    assert max(x for x in array(faint, "x") if x is not None) == pytest.approx(2.0, rel=0.05)


def test_samplers_compare_best_so_far_against_random_search(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "samplers", "tiny")
    (figure,) = figures(app)
    assert names(figure) == {"random", "tpe"}
    assert {a["text"] for a in figure["layout"]["annotations"]} == {"sgd", "adam"}  # one panel per optimizer
    medians = [t for t in figure["data"] if t.get("showlegend") is not False or t["line"].get("width") == 2]
    for trace in medians:
        values = [v for v in array(trace, "y") if v == v]
        assert values == sorted(values, reverse=True)  # best so far never gets worse
    (table,) = (t.value for t in app.dataframe)
    assert set(table["optimizer"]) == {"sgd", "adam"} and set(table["sampler"]) == {"tpe"}


def test_sensitivity_shows_lr_importance_and_parallel_coordinates(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "sensitivity", "tiny")
    lr, coloured, importance, parallel = figures(app)
    assert {"sgd", "adam"} <= names(lr) and lr["layout"]["xaxis"]["type"] == "log"
    assert coloured["data"][0]["marker"]["showscale"]
    assert importance["data"][0]["type"] == "bar" and "lr" in importance["data"][0]["y"]
    assert parallel["data"][0]["type"] == "parcoords"
    assert "objective" in [d["label"] for d in parallel["data"][0]["dimensions"]]


def test_importances_log_no_line_of_optuna(storage) -> None:
    """The Sensitivity page's importances pool trials in a study of their own, in memory: Optuna's
    "A new study created in memory" line would reach the terminal of tuner dashboard at every redraw."""
    recorded = logging.handlers.BufferingHandler(capacity=100)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    logging.getLogger("optuna").addHandler(recorded)
    try:
        assert analysis.importances(storage, "tiny", "adam")
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # as it was
    finally:
        logging.getLogger("optuna").removeHandler(recorded)
        optuna.logging.set_verbosity(verbosity)
    assert [record.getMessage() for record in recorded.buffer] == []


def test_best_configurations_table_downloads_and_snippets(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "best", "tiny")
    table, parameters = (t.value for t in app.dataframe)
    assert len(table) == 4 and set(table["optimizer"]) == {"sgd", "adam"}
    assert (table["seeds"] == 2).all()
    labels = [f"{o} · {s}" for o, s in zip(table["optimizer"], table["sampler"], strict=True)]
    assert list(parameters["configuration"]) == labels  # in the scores' order, named as "paste it" names them
    assert parameters["lr"].str.fullmatch(r"\d\.\d\de[+-]\d\d").all()  # scientific, 3 significant digits
    assert widget(app.selectbox, "configuration").value == labels[0]  # the winner, preselected
    assert [b.label for b in app.get("download_button")] == ["CSV", "JSON"]
    torch_code, study_code = (c.value for c in app.code)
    assert "torch.optim." in torch_code and "optimizers:" in study_code
    widget(app.selectbox, "configuration").set_value("adam · tpe").run()
    torch_code, _ = (c.value for c in app.code)
    assert "torch.optim.Adam(" in torch_code


def test_quadratic_has_no_validation_data_and_a_theoretical_reference(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "convergence", "quad")
    assert any("no validation data" in info.value for info in app.info)
    assert widget(app.radio, "x axis").options == ["steps", "wall time"]
    widget(app.radio, "x axis").set_value("steps").run()
    (figure,) = figures(app)
    references = sorted(n for n in names(figure) if n.startswith("optimal"))
    theory = data.theory("quadratic", {"dim": 10})
    assert references == [f"optimal {method} (rate {theory[f'{key}_rate']:.3f})" for method, key in (
        ("Nesterov", "nesterov"), ("gradient descent", "gd"), ("heavy ball", "heavy_ball"))], names(figure)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_an_empty_storage(monkeypatch, tmp_path, page) -> None:
    url = f"sqlite:///{tmp_path}/*missing*.db"  # Markdown's emphasis, shown as typed
    missing = open_page(monkeypatch, url, page)
    assert missing.info[0].value == code(f"storage='{url}': no such database file '{tmp_path}/*missing*.db'; correct "
                                         "the path, or create it with tuner launch STUDY_FILE --storage URL")
    Store.open(f"sqlite:///{tmp_path}/empty.db", heartbeat=False).close()
    empty = open_page(monkeypatch, f"sqlite:///{tmp_path}/empty.db", page)
    assert "no experiment yet" in empty.info[0].value


@pytest.mark.parametrize("page", [p for p in PAGES[1:] if p != "suites"])  # suites: test_suites_page.py
def test_pages_explain_an_experiment_with_no_finished_trial(monkeypatch, tmp_path, page) -> None:
    study = write_study(tmp_path, name="fresh")
    url = f"sqlite:///{tmp_path}/fresh.db"
    assert tuner("launch", str(study), "--workers", "0", "--storage", url, cwd=tmp_path).returncode == 0
    app = open_page(monkeypatch, url, page, "fresh")
    assert any("no completed trial yet" in info.value for info in app.info)


def test_best_page_reads_trials_again_when_its_cached_copy_misses_a_new_best(monkeypatch, tmp_path) -> None:
    """Each query is cached on its own: the trials read by an earlier page can predate the best rows."""
    url = f"sqlite:///{tmp_path}/grows.db"
    spec = parse_experiment({**TINY, "name": "grows", "trials": 2, "samplers": ["random"], "reevaluate": 0})
    store = Store.open(url)
    create_experiment(store, spec)
    assert run_worker(store, "grows", max_trials=1) == 1
    open_page(monkeypatch, url, "samplers", "grows")  # caches the trials: one run
    assert run_worker(store, "grows", max_trials=3) == 3
    store.close()
    app = open_page(monkeypatch, url, "best", "grows")  # best rows read now name runs the cache lacks
    _, table = (t.value for t in app.dataframe)
    assert len(table) == len(spec.optimizers) and (table["lr"] != "-").all()


def test_experiments_page_reads_the_listing_again_for_an_experiment_newer_than_it(monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/two.db"
    store = Store.open(url)
    first = parse_experiment({**TINY, "name": "first"})
    create_experiment(store, first)
    open_page(monkeypatch, url, "experiments", "first")  # caches the listing: one experiment
    second = parse_experiment({**TINY, "name": "second"})
    create_experiment(store, second)
    store.close()
    data.experiment_names.clear()  # the names' cache expires first and now lists the new experiment
    app = open_page(monkeypatch, url, "experiments", "second")
    assert app.subheader[0].value == code("second")


@pytest.mark.e2e
def test_dashboard_reads_while_a_launch_writes(monkeypatch, tmp_path) -> None:
    """The page redraws during a two-worker launch on the same SQLite file: neither side sees a lock error."""
    study = write_study(tmp_path, name="live", trials=60, population=1)  # one trial at a time: progress to see
    url = f"sqlite:///{tmp_path}/live.db"
    assert tuner("launch", str(study), "--workers", "0", "--storage", url, cwd=tmp_path).returncode == 0
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    launch = subprocess.Popen([sys.executable, "-m", "tuner", "launch", str(study), "--workers", "2", "--storage", url],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    others = itertools.cycle([page for page in PAGES if page != "experiments"])
    try:
        while launch.poll() is None:  # the progress page each round, and another page in turn
            app = open_page(monkeypatch, url, "experiments", "live")
            seen.add(int(app.dataframe[0].value.set_index("name").loc["live", "done"]))
            open_page(monkeypatch, url, next(others), "live")
            time.sleep(0.1)
    finally:
        out, err = launch.communicate(timeout=300)
    assert launch.returncode == 0, out + err
    assert "locked" not in out + err
    assert len(seen) >= 2, f"the page saw the launch progress: {sorted(seen)}"


def test_how_sure_are_we_ranks_with_intervals_and_shows_what_k_trials_buy(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "rankings", "tiny")
    shown = app.dataframe[0].value
    best = data.ranking.__wrapped__(storage, "tiny")[0]
    assert list(shown["optimizer"]) == list(best["optimizer"]) and list(shown["rank"]) == list(best["rank"])
    assert all(re.fullmatch(r"\S+ \[\S+, \S+\]|\S+", cell) for cell in shown["mean [95% CI]"])
    ranking, improvement, tunability = figures(app)
    assert len(ranking["data"]) == len(best) and all("error_x" in trace for trace in ranking["data"])
    assert improvement["data"][0]["type"] == "heatmap"
    assert {"adam/random", "sgd/random", "adam/tpe", "sgd/tpe"} <= names(tunability)
    omega = app.dataframe[1].value
    assert set(omega["sampler"]) == {"random"} and set(omega["optimizer"]) == {"sgd", "adam"}


@pytest.fixture(scope="module")
def target_storage(tmp_path_factory) -> str:
    """SQLite URL of experiment ``target``: the quadratic scored by steps_to_target 1e-6 in 300
    steps, which gradient descent cannot reach at any step size (its best rate needs about 450);
    step sizes under 2 / L, where neither optimizer diverges."""
    directory = tmp_path_factory.mktemp("target")
    url = f"sqlite:///{directory}/tuner.db"
    study = write_study(directory, name="target", task={"name": "quadratic", "options": {"dim": 10}},
                        optimizers=["sgd", "momentum"], samplers=["random"], trials=4,
                        space={"schedule": "constant", "lr": {"low": 1e-3, "high": 0.015}},
                        budget={"steps": 300, "eval_every": 20}, objective={"name": "steps_to_target", "target": 1e-6})
    result = tuner("launch", str(study), "--workers", "2", "--storage", url, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return url


def test_a_missed_target_is_shown_as_not_reached_never_as_steps(monkeypatch, target_storage) -> None:
    best = open_page(monkeypatch, target_storage, "best", "target")
    scores = best.dataframe[0].value.set_index("optimizer")
    assert list(scores.columns) == ["rank", "sampler", "mean", "std", "reached", "diverged", "trial objective", "trial"]
    assert re.fullmatch(r"not reached \(final loss \d\.\d\de[+-]\d\d\)", scores.loc["sgd", "mean"])
    assert scores.loc["sgd", "trial objective"].startswith("not reached") and scores.loc["sgd", "reached"] == "0 of 2"
    assert any("only ranks" in c.value for c in best.caption)

    samplers = open_page(monkeypatch, target_storage, "samplers", "target")
    (figure,) = figures(samplers)
    assert figure["layout"]["yaxis"]["title"]["text"] == "best steps_to_target so far"
    budget = [t for t in figure["data"] if t["name"].startswith("step budget")]
    assert len(budget) == 2 and {v for t in budget for v in array(t, "y")} == {300}

    sensitivity = open_page(monkeypatch, target_storage, "sensitivity", "target")
    (sgd,) = [t for t in figures(sensitivity)[0]["data"] if t["name"] == "sgd"]
    assert all(symbol.endswith("-open") for symbol in sgd["marker"]["symbol"])
    assert all(text.startswith("not reached (final loss") for text in sgd["text"])


def test_convergence_defaults_to_the_objectives_series_and_draws_the_target(monkeypatch, storage,
                                                                            target_storage) -> None:
    target = open_page(monkeypatch, target_storage, "convergence", "target")
    assert widget(target.selectbox, "metric").value == "train_loss"
    assert not target.slider  # a synthetic task's per-step loss is exact: nothing to smooth
    (figure,) = figures(target)
    (line,) = [t for t in figure["data"] if t["name"] == "target 1e-06"]
    assert set(array(line, "y")) == {1e-6} and figure["layout"]["yaxis"]["exponentformat"] == "power"
    widget(target.selectbox, "metric").set_value("loss").run()
    assert "target 1e-06" in names(figures(target)[0])

    tiny = open_page(monkeypatch, storage, "convergence", "tiny")
    assert widget(tiny.selectbox, "metric").value == "val_loss"  # final_val_loss
    assert not any(n.startswith("target") for n in names(figures(tiny)[0]))


def test_training_loss_can_be_smoothed_and_the_rule_is_stated(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "convergence", "tiny")
    widget(app.selectbox, "metric").set_value("train_loss")
    widget(app.radio, "x axis").set_value("steps").run()
    raw = {t["name"]: array(t, "y") for t in figures(app)[0]["data"] if t["line"].get("width") == 2}
    app.slider[0].set_value(0.9).run()
    assert not app.exception
    smoothed = {t["name"]: array(t, "y") for t in figures(app)[0]["data"] if t["line"].get("width") == 2}
    for name in raw:
        assert smoothed[name][0] == raw[name][0] and np.std(np.diff(smoothed[name])) < np.std(np.diff(raw[name]))
    assert any("exponential moving average" in c.value and "w = 0.90" in c.value for c in app.caption)


def test_convergence_shows_the_quadratics_theory_gap(monkeypatch, storage) -> None:
    app = open_page(monkeypatch, storage, "convergence", "quad")
    gap = next(frame.value for frame in app.dataframe if "lr_ratio" in frame.value.columns)
    expected = data.theory_gap.__wrapped__(storage, "quad")
    assert set(gap["optimizer"]) == {"sgd", "momentum"} == set(expected["optimizer"])
    assert list(gap["lr_ratio"]) == pytest.approx(list(expected["lr_ratio"]))
    assert (gap["lr_ratio"] > 0).all() and (gap["optimal_lr"] > 0).all()
