"""Shared helpers for the tests that launch experiments."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from statistics import mean

import yaml
from optuna.storages._rdb import models
from sqlalchemy import Engine, select

from tuner.storage import queries, schema

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "task": {"name": "softmax"},
    "optimizers": ["sgd", "adam"],
    "samplers": ["random", "tpe"],
    "trials": 5,
    "budget": {"epochs": 2},
    "space": {"schedule": {"choices": ["constant", "cosine"]}},
    "reevaluate": 2,
}


def write_study(directory: Path, **changes) -> Path:
    data = {**TINY, **changes}
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def tuner(*args: str, cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the tuner command as a user would, in its own process."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}  # the checkout under test
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


def run_rows(engine: Engine, name: str) -> list[dict]:
    s, r, e = schema.studies, schema.runs, schema.experiments
    query = (select(r, s.c.optimizer, s.c.sampler, s.c.study_name).join(s, s.c.id == r.c.study_id)
             .join(e, e.c.id == s.c.experiment_id).where(e.c.name == name))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def expected_best(engine: Engine, name: str) -> dict[tuple[str, str], int]:
    """The best run per (optimizer, sampler), computed in Python from the runs: an oracle for the view."""
    rows = run_rows(engine, name)
    reevals: dict[int, list[float]] = {}
    for row in rows:
        if row["kind"] == "reevaluation" and row["state"] == "COMPLETE":
            reevals.setdefault(row["source_run_id"], []).append(row["objective"])
    best: dict[tuple[str, str], tuple] = {}
    for row in rows:
        if row["kind"] != "trial" or row["state"] != "COMPLETE":
            continue
        scores = reevals.get(row["id"])
        key = (0, mean(scores), row["objective"], row["id"]) if scores else (1, 0.0, row["objective"], row["id"])
        slot = (row["optimizer"], row["sampler"])
        if slot not in best or key < best[slot][0]:
            best[slot] = (key, row["id"])
    return {slot: run_id for slot, (_, run_id) in best.items()}


def check_consistent(engine: Engine, name: str, workers: int = 1, overshoot: int | None = None) -> dict[str, Counter]:
    """Every study met its budget (by at most ``overshoot`` more, default workers - 1), its trials are
    numbered 0, 1, ... without a duplicate or a gap, no trial is RUNNING or WAITING, every finished Optuna
    trial has exactly one run row with curves, every run row's trial finished alike. Returns the Optuna
    state counts per study name."""
    experiment_id, spec = queries.experiment(engine, name)
    rows = queries.studies(engine, experiment_id)
    optuna_counts = queries.optuna_states(engine, [r.study_name for r in rows])
    runs = [r for r in run_rows(engine, name) if r["kind"] == "trial"]
    trials, studies = models.TrialModel.__table__, models.StudyModel.__table__
    with engine.connect() as conn:
        found = conn.execute(select(studies.c.study_name, trials.c.number, trials.c.trial_id, trials.c.state)
                             .join(studies, studies.c.study_id == trials.c.study_id)
                             .where(studies.c.study_name.in_([r.study_name for r in rows]))).all()
        curve_runs = Counter(conn.execute(select(schema.curves.c.run_id)).scalars())
    trial_states = {trial_id: state.name for _, _, trial_id, state in found}
    for row in rows:
        numbers = sorted(number for study, number, _, _ in found if study == row.study_name)
        assert numbers == list(range(len(numbers))), (row.study_name, numbers)  # no duplicate, no gap
        counts = optuna_counts.get(row.study_name, Counter())
        assert counts["RUNNING"] == 0 and counts["WAITING"] == 0, (row.study_name, counts)  # every retry ran
        finished = counts["COMPLETE"] + counts["PRUNED"]
        extra = workers - 1 if overshoot is None else overshoot
        assert row.n_trials <= finished <= row.n_trials + extra, (row.study_name, counts)
    by_trial = Counter(r["optuna_trial_id"] for r in runs)
    assert max(by_trial.values()) == 1, "a trial has two run rows"
    for run in runs:  # written with its trial's final state: a failed trial has none
        state = trial_states[run["optuna_trial_id"]]
        assert state == ("COMPLETE" if run["state"] == "COMPLETE" else "PRUNED"), run
        # the training curve always; evaluation curves unless it diverged before the first evaluation
        assert curve_runs[run["id"]] >= (1 if run["state"] == "DIVERGED" else 2), "curves missing"
    finished_trials = {t for t, s in trial_states.items() if s in ("COMPLETE", "PRUNED")}
    assert finished_trials <= set(by_trial), "a finished trial has no run row"
    return optuna_counts


def downgrade(engine: Engine, revision: str) -> None:
    """Undo tuner's migrations down to ``revision`` (the tests of the migrations' downgrades)."""
    from alembic import command
    from alembic.config import Config

    from tuner.storage.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
