"""End to end: tuner launch on a SQLite file, then best / status / list and Optuna's own CLI."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers import REPO, check_consistent, expected_best, run_rows, tuner, write_study
from tuner.storage import queries
from tuner.storage.engine import reader_engine

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One real launch with two worker processes, shared by the tests of this module."""
    directory = tmp_path_factory.mktemp("launch")
    study = write_study(directory)
    result = tuner("launch", str(study), "--workers", "2", cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory, study, result


def test_launch_runs_every_study_and_prints_the_winners(launched) -> None:
    directory, _, result = launched
    assert (directory / "tuner.db").exists(), "the default storage is sqlite:///tuner.db in the working directory"
    assert "best configuration per optimizer" in result.stdout
    assert "tuner best tiny --storage sqlite:///tuner.db" in result.stdout
    assert "tuner dashboard --storage sqlite:///tuner.db" in result.stdout
    engine = reader_engine(f"sqlite:///{directory}/tuner.db")
    counts = check_consistent(engine, "tiny", workers=2)
    assert len(counts) == 4
    reevaluations = [r for r in run_rows(engine, "tiny") if r["kind"] == "reevaluation"]
    assert len(reevaluations) == 4 * 2 and {r["seed"] for r in reevaluations} == {1_000_000, 1_000_001}


def test_relaunch_is_idempotent(launched) -> None:
    directory, study, _ = launched
    engine = reader_engine(f"sqlite:///{directory}/tuner.db")
    before = len(run_rows(engine, "tiny"))
    again = tuner("launch", str(study), "--workers", "2", cwd=directory)
    assert again.returncode == 0, again.stderr
    assert len(run_rows(engine, "tiny")) == before


def test_changed_study_file_under_the_same_name_is_refused(launched, tmp_path) -> None:
    directory, _, _ = launched
    changed = write_study(tmp_path, trials=7)
    result = tuner("launch", str(changed), "--storage", f"sqlite:///{directory}/tuner.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists with a different study file (changed: trials)" in result.stderr


def test_best_in_three_formats_agrees_with_the_sql_view_and_the_runs(launched) -> None:
    directory, _, _ = launched
    url = f"sqlite:///{directory}/tuner.db"
    as_json = json.loads(tuner("best", "tiny", "--format", "json", "--storage", url, cwd=directory).stdout)
    assert {(b["optimizer"], b["sampler"]) for b in as_json} == {(o, s) for o in ("sgd", "adam") for s in ("random", "tpe")}
    adam = next(b for b in as_json if b["optimizer"] == "adam")
    assert set(adam["config"]) >= {"optimizer", "lr", "betas", "eps", "batch_size", "schedule"}
    assert adam["objective"]["seeds"] == 2 and adam["objective"]["std"] is not None

    rows = list(csv.DictReader(io.StringIO(tuner("best", "tiny", "--format", "csv", "--storage", url,
                                                 cwd=directory).stdout)))
    assert len(rows) == 4 and json.loads(rows[0]["config"])["optimizer"] in ("sgd", "adam")

    table = tuner("best", "tiny", "--optimizer", "sgd", "--storage", url, cwd=directory).stdout
    assert "sgd" in table and "adam" not in table and "lr=" in table

    # the documented SELECT, in plain sqlite3
    import sqlite3

    with sqlite3.connect(directory / "tuner.db") as conn:
        view = {(o, s): (run_id, json.loads(params)) for o, s, run_id, params in conn.execute(
            "SELECT optimizer, sampler, run_id, params FROM tuner_best_configs WHERE experiment = ?", ("tiny",))}
    engine = reader_engine(url)
    assert {slot: run_id for slot, (run_id, _) in view.items()} == expected_best(engine, "tiny")
    for best in as_json:
        assert view[(best["optimizer"], best["sampler"])][1] == best["config"]


def test_status_list_and_optuna_cli_read_the_storage(launched) -> None:
    directory, _, _ = launched
    url = f"sqlite:///{directory}/tuner.db"
    status = tuner("status", "tiny", "--storage", url, cwd=directory)
    assert status.returncode == 0 and re.search(r"[56]/5", status.stdout) and "re-evaluation runs: 8 of 8" in status.stdout
    listing = tuner("list", "--storage", url, cwd=directory).stdout
    assert "tiny" in listing and "softmax" in listing
    assert re.search(r"│ 2[0-4]/20 ", listing), listing  # two workers may overshoot each study by one
    optuna_cli = Path(sys.executable).with_name("optuna")
    studies = subprocess.run([optuna_cli, "studies", "--storage", url], capture_output=True, text=True)
    assert studies.returncode == 0 and "tiny/adam/tpe/0" in studies.stdout
    best = subprocess.run([optuna_cli, "best-trial", "--study-name", "tiny/adam/tpe/0", "--storage", url, "-f", "json"],
                          capture_output=True, text=True)
    assert best.returncode == 0 and json.loads(best.stdout)["state"] == "COMPLETE"
    unknown = tuner("best", "nope", "--storage", url, cwd=directory)
    assert unknown.returncode == 2 and "experiment 'nope' is not in this storage; experiments: 'tiny'" in unknown.stderr


def test_workers_zero_only_creates_the_experiment(tmp_path) -> None:
    study = write_study(tmp_path, name="later")
    result = tuner("launch", str(study), "--workers", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = reader_engine(f"sqlite:///{tmp_path}/tuner.db")
    experiment_id, _ = queries.experiment(engine, "later")
    assert len(queries.studies(engine, experiment_id)) == 4 and run_rows(engine, "later") == []


def test_ctrl_c_stops_cleanly_and_a_second_launch_resumes(tmp_path) -> None:
    study = write_study(tmp_path, name="interrupted", task={"name": "mlp", "options": {"hidden_sizes": [64]}},
                        trials=12, budget={"epochs": 8})
    url = f"sqlite:///{tmp_path}/tuner.db"
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tuner", "launch", str(study), "--workers", "2"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    finished = 0
    while finished < 6 and time.monotonic() < deadline:
        time.sleep(0.3)
        if (tmp_path / "tuner.db").exists():
            try:
                finished = len(run_rows(reader_engine(url), "interrupted"))
            except Exception:  # the schema may not exist yet
                finished = 0
    assert finished >= 6, "the launch made no progress"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, out + err
    assert "run the same command again to resume" in out and "Traceback" not in err, err
    engine = reader_engine(url)
    with engine.connect() as conn:
        states = [str(s) for s in conn.execute(text("SELECT state FROM trials")).scalars()]
    assert "RUNNING" not in states, states
    kept = {r["id"] for r in run_rows(engine, "interrupted")}
    assert len(kept) < 4 * 12, "interrupted too late to test a resume"

    resumed = tuner("launch", str(study), "--workers", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check_consistent(engine, "interrupted", workers=2)
    assert kept <= {r["id"] for r in run_rows(engine, "interrupted")}, "a finished trial was lost"


def test_diverging_configuration_is_recorded_and_the_study_goes_on(tmp_path) -> None:
    study = write_study(tmp_path, name="diverging", samplers=["random"], reevaluate=1,
                        optimizers=[{"name": "sgd", "space": {"lr": {"low": 1e4, "high": 1e5}}}, "adam"])
    result = tuner("launch", str(study), "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    engine = reader_engine(f"sqlite:///{tmp_path}/tuner.db")
    counts = check_consistent(engine, "diverging")
    runs = [r for r in run_rows(engine, "diverging") if r["kind"] == "trial"]
    sgd = [r for r in runs if r["optimizer"] == "sgd"]
    assert len(sgd) == 5 and all(r["state"] == "DIVERGED" and r["diverged_at"] is not None for r in sgd)
    assert all(r["objective"] is None for r in sgd)
    assert counts["diverging/sgd/random/0"]["PRUNED"] == 5
    with engine.connect() as conn:
        attrs = conn.execute(text("SELECT value_json FROM trial_user_attributes WHERE key = 'diverged_at'")).scalars().all()
    assert len(attrs) == 5
    assert sum(r["state"] == "COMPLETE" for r in runs if r["optimizer"] == "adam") == 5
    status = tuner("status", "diverging", cwd=tmp_path).stdout
    assert "│ sgd       │ random  │      0 │      5/5 │        0 │      0 │        5 │" in status
    best = json.loads(tuner("best", "diverging", "--format", "json", cwd=tmp_path).stdout)
    assert [b["optimizer"] for b in best] == ["adam"]
