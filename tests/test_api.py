"""tuner.open_experiment and storage's query functions, on a real launched experiment: one
definition of "best" (the tuner_best_configs view) read alike by the API, the CLI and plain SQL."""

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import tuner
from tests.helpers import REPO, run_rows, write_study
from tests.helpers import tuner as run_tuner
from tuner import analysis
from tuner.api import BEST_RUN_COLUMNS, searched_params
from tuner.errors import ConfigError
from tuner.spec import Experiment, parse_experiment
from tuner.storage import queries
from tuner.storage.engine import reader_engine
from tuner.storage.records import DONE_STATES
from tuner.storage.store import Store
from tuner.worker import create_experiment

NAME = "tiny"


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, str]:
    """The directory and SQLite URL of one launch: softmax, sgd + adam, random + tpe, two repeats,
    re-evaluated on two seeds."""
    directory = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{directory}/tuner.db"
    result = run_tuner("launch", str(write_study(directory, repeats=2, trials=4)), "--workers", "2", "--storage", url,
                       cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory, url


@pytest.fixture
def exp(launched):
    with tuner.open_experiment(NAME, storage=launched[1]) as opened:
        yield opened


def view_rows(directory: Path) -> list[dict]:
    """The documented SELECT, in plain sqlite3."""
    with sqlite3.connect(directory / "tuner.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM tuner_best_configs WHERE experiment = ?", (NAME,))]


def test_best_agrees_with_the_view_by_plain_sql_and_with_tuner_best(launched, exp) -> None:
    directory, url = launched
    best = exp.best()
    view = {(r["optimizer"], r["sampler"]): r for r in view_rows(directory)}
    assert len(best) == len(view) == 4
    for row in best.to_dict("records"):
        expected = view[(row["optimizer"], row["sampler"])]
        assert row["run_id"] == expected["run_id"] and row["params"] == json.loads(expected["params"])
        assert row["reeval_mean"] == pytest.approx(expected["reeval_mean"]) and row["reeval_count"] == 2
    cli = json.loads(run_tuner("best", NAME, "--format", "json", "--storage", url, cwd=directory).stdout)
    ranked, _ = exp.ranking()  # tuner best prints the rows in rank order (the pooled mean over repeats)
    assert [(b["optimizer"], b["sampler"]) for b in cli] == list(zip(ranked["optimizer"], ranked["sampler"],
                                                                      strict=True))
    assert [b["ranking"]["mean"]["value"] for b in cli] == pytest.approx(list(ranked["mean"]))
    assert list(ranked["mean"]) == sorted(ranked["mean"])
    by_config = {(r["optimizer"], r["sampler"]): r for r in best.to_dict("records")}
    for b in cli:
        row = by_config[b["optimizer"], b["sampler"]]
        assert b["config"] == row["params"]
        assert b["objective"]["mean"] == pytest.approx(row["reeval_mean"])
        assert b["objective"]["std"] == pytest.approx(row["reeval_std"])


def test_best_is_ranked_by_the_one_rule_and_per_optimizer_is_each_ones_first_row(exp) -> None:
    best = exp.best()
    keys = [(0 if r["reeval_count"] else 1, r["reeval_mean"], r["trial_objective"], r["run_id"])
            for r in best.to_dict("records")]
    assert keys == sorted(keys)  # best first: every row here is re-evaluated, so by mean
    per_optimizer = exp.best(per_optimizer=True)
    assert list(per_optimizer["optimizer"]) == list(dict.fromkeys(best["optimizer"]))
    for row in per_optimizer.to_dict("records"):
        assert row["run_id"] == best[best["optimizer"] == row["optimizer"]].iloc[0]["run_id"]
    only = exp.best(optimizer="adam", sampler="tpe")
    assert len(only) == 1 and only.iloc[0]["run_id"] == best[(best["optimizer"] == "adam")
                                                             & (best["sampler"] == "tpe")].iloc[0]["run_id"]


def test_the_reevaluated_trials_are_each_studys_best_and_hold_the_views_choice(launched, exp) -> None:
    engine = exp.engine
    chosen = queries.best_trials(engine, exp.id)
    trials = exp.trials()
    complete = trials[trials["state"] == "COMPLETE"]
    runs = run_rows(engine, NAME)
    study_of = {r["id"]: r["study_name"] for r in runs}
    assert len(chosen) == 8  # one per study
    for pick in chosen:
        mine = complete[complete["run_id"].map(study_of) == study_of[pick["id"]]]
        assert pick["objective"] == mine["objective"].min()
    assert {(r["source_run_id"], r["seed"]) for r in runs if r["kind"] == "reevaluation"} == queries.reevaluated(
        engine, exp.id) == {(pick["id"], seed) for pick in chosen for seed in (1_000_000, 1_000_001)}
    assert set(exp.best()["run_id"]) <= {pick["id"] for pick in chosen}


def test_trials_studies_and_listing(launched, exp) -> None:
    trials = exp.trials()
    runs = [r for r in run_rows(exp.engine, NAME) if r["kind"] == "trial"]
    assert sorted(trials["run_id"]) == sorted(r["id"] for r in runs)
    assert set(queries.TRIAL_COLUMNS) < set(trials.columns) and "lr" in searched_params(trials)
    assert trials["params"].map(lambda p: p["optimizer"]).tolist() == trials["optimizer"].tolist()
    studies = exp.studies()
    assert len(studies) == 8 and (studies["trials"] == 4).all() and (studies["running"] == 0).all()
    assert studies[[s.lower() for s in DONE_STATES]].to_numpy().sum() == len(trials)
    (listed,) = queries.experiments(exp.engine)
    assert (listed["name"], listed["studies"], listed["total"], listed["done"]) == (NAME, 8, 32, len(trials))
    assert listed["running"] == 0 and listed["complete"] == studies["complete"].sum()
    assert queries.experiment_names(exp.engine) == [NAME]
    finished = queries.finish_times(exp.engine)
    assert list(finished.columns) == ["name", "finished_at"] and len(finished) == len(trials)
    assert Experiment(**exp.spec).name == NAME and exp.spec["trials"] == 4


def test_curves_of_the_best_runs_of_an_optimizer_and_of_given_runs(exp) -> None:
    assert exp.series() == ["train_loss", "val_accuracy", "val_loss"]
    runs = exp.best_runs()
    assert list(runs.columns) == BEST_RUN_COLUMNS and sorted(set(runs["optimizer"])) == ["adam", "sgd"]
    assert (runs.groupby("optimizer")["seed"].apply(sorted).map(tuple) == (1_000_000, 1_000_001)).all()
    assert set(runs["source_run_id"]) == set(exp.best(per_optimizer=True)["run_id"])
    best = exp.curves("val_loss")
    assert set(best["run_id"]) == set(runs["run_id"]) and {"optimizer", "seed", "step", "value"} <= set(best.columns)
    adam = exp.curves("train_loss", optimizer="adam")
    trials = exp.trials()
    assert set(adam["run_id"]) == set(trials.loc[trials["optimizer"] == "adam", "run_id"])
    one = int(runs["run_id"].iloc[0])
    given = exp.curves("train_loss", run_ids=[one])
    assert list(given.columns) == ["run_id", "step", "seconds", "value"] and set(given["run_id"]) == {one}
    assert given["step"].iloc[0] == 0 and given["step"].is_monotonic_increasing


def test_importances_read_optunas_studies_without_writing(launched) -> None:
    directory, url = launched
    files = sorted(directory.glob("tuner.db*"))
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    found = analysis.importances(url, NAME, "adam")
    assert "lr" in found and sum(found.values()) == pytest.approx(1.0)
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.glob("tuner.db*"))} == before
    assert analysis.importances(url, NAME, "rmsprop") == {}  # not in the experiment


def test_open_experiment_resolves_storage_like_the_cli_and_explains_errors(launched, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TUNER_STORAGE", launched[1])
    with tuner.open_experiment(NAME) as opened:
        assert opened.name == NAME and len(opened.best()) == 4
    with pytest.raises(ConfigError, match="experiment 'nope' is not in this storage; experiments: 'tiny'"):
        tuner.open_experiment("nope")
    with pytest.raises(ConfigError, match="no such database file"):
        tuner.open_experiment(NAME, storage=f"sqlite:///{tmp_path}/missing.db")
    Store.open(f"sqlite:///{tmp_path}/empty.db", heartbeat=False).close()
    empty = reader_engine(f"sqlite:///{tmp_path}/empty.db")
    assert queries.experiment_names(empty) == [] and queries.experiments(empty) == []
    empty.dispose()


def loaded_after(statement: str) -> set[str]:
    """The modules of tuner and the dashboard that ``statement`` loads, in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in sys.modules if m.split('.')[0] in ('tuner', 'dashboard')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_import_tuner_stays_cheap() -> None:
    assert loaded_after("import tuner") == {"tuner", "tuner.errors"}
    assert "tuner.api" in loaded_after("import tuner; tuner.open_experiment")


def test_storage_is_a_leaf_and_the_study_file_knows_no_storage() -> None:
    storage = loaded_after("import tuner.storage, tuner.storage.queries, tuner.storage.store, tuner.storage.migrate")
    assert storage <= {"tuner", "tuner.errors", "tuner.urls"} | {m for m in storage if m.startswith("tuner.storage")}
    assert not {m for m in loaded_after("import tuner.spec") if m.startswith("tuner.storage")}


def test_the_dashboard_reads_only_through_query_functions() -> None:
    source = (REPO / "dashboard" / "data.py").read_text()
    assert "select(" not in source and "schema" not in source and "from sqlalchemy import Engine\n" in source
    for path in (REPO / "dashboard").rglob("*.py"):
        assert "select(" not in path.read_text(), path


def test_filters_and_series_outside_the_experiment_are_refused(launched, exp) -> None:
    with pytest.raises(ConfigError, match=r"optimizer='adamm' is not in experiment 'tiny'; allowed: sgd, adam"):
        exp.best(optimizer="adamm")
    with pytest.raises(ConfigError, match=r"sampler='nope' is not in experiment 'tiny'; allowed: random, tpe"):
        exp.best(sampler="nope")
    with pytest.raises(ConfigError, match=r"series='nope' is not recorded in experiment 'tiny'; allowed: "):
        exp.curves("nope")
    result = run_tuner("best", NAME, "--optimizer", "adamm", "--storage", launched[1], cwd=launched[0])
    assert result.returncode == 2 and "allowed: sgd, adam" in result.stderr and "Traceback" not in result.stderr


def test_an_experiment_without_finished_runs_reads_as_empty_frames(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    store = Store.open(url)
    create_experiment(store, parse_experiment({"name": "empty", "task": {"name": "softmax"}, "optimizers": ["adam"],
                                               "samplers": ["random"], "trials": 2, "budget": {"epochs": 1}}))
    store.close()
    with tuner.open_experiment("empty", storage=url) as empty:
        assert empty.best().empty and empty.trials().empty and len(empty.studies()) == 1
        for curves in (empty.curves("val_loss"), empty.curves("train_loss", optimizer="adam")):
            assert curves.empty and {"run_id", "step", "value", "optimizer"} <= set(curves.columns)


def test_repr_names_the_storage_as_given(launched, exp) -> None:
    assert repr(exp) == f"StoredExperiment({NAME!r}, {launched[1]!r})"  # a read-only SQLite engine's URL has no path
