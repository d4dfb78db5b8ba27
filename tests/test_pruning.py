"""Pruning end to end: the median and hyperband pruners stop real trials of a run experiment, and
every reader agrees they were pruned: Optuna's trials, tuner's runs, ``tuner status`` and the
dashboard. A diverged trial is PRUNED for Optuna too, but stays DIVERGED in tuner's runs."""

from collections import Counter

import optuna
import pytest
from typer.testing import CliRunner

from dashboard import data
from tests.helpers import check_consistent, run_rows
from tuner import cli
from tuner.spec import parse_experiment
from tuner.storage.engine import reader_engine
from tuner.storage.store import Store
from tuner.worker import create_experiment, quiet_optuna, run_worker

TRIALS = 24
STUDY = {
    "task": {"name": "quadratic", "options": {"dim": 10, "condition_number": 10.0}},
    "optimizers": ["sgd"],
    "samplers": ["random"],
    "trials": TRIALS,
    # 10 evaluations per run; lr from hopelessly small to unstable (above 2 / L = 0.2)
    "budget": {"steps": 200, "eval_every": 20},
    "space": {"schedule": "constant", "lr": {"low": 1e-4, "high": 1.0}},
    "objective": "final_train_loss",
    "reevaluate": 0,
}


def _status_row(output: str) -> dict[str, int]:
    """The counts of the one study's row of ``tuner status``'s table."""
    line = next(line for line in output.splitlines() if "sgd" in line and "random" in line)
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    columns = ("finished", "complete", "pruned", "diverged", "failed", "running", "waiting")
    return dict(zip(columns, [int(cells[3].split("/")[0]), *map(int, cells[4:])], strict=True))


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruned_trials_show_as_pruned_everywhere(database, monkeypatch, pruner: str) -> None:
    quiet_optuna()
    name = f"pruned-{pruner}"
    url = database
    spec = parse_experiment({**STUDY, "name": name, "pruner": pruner})
    store = Store.open(url)
    try:
        _, rows = create_experiment(store, spec)
        assert run_worker(store, name) == TRIALS
    finally:
        store.close()
    engine = reader_engine(url)
    check_consistent(engine, name)

    # (a) Optuna: pruned trials stopped before the last evaluation; diverged ones are PRUNED too
    trials = optuna.load_study(study_name=rows[0].study_name, storage=url).trials
    optuna_states = Counter(t.state.name for t in trials)
    assert optuna_states["PRUNED"] > 0 and optuna_states["COMPLETE"] > 0, optuna_states
    # (b) tuner's runs: PRUNED for a pruner's stop, DIVERGED for a divergence, never confused
    runs = {r["optuna_trial_id"]: r for r in run_rows(engine, name)}
    run_states = Counter(r["state"] for r in runs.values())
    assert run_states["PRUNED"] > 0 and run_states["DIVERGED"] > 0, run_states
    assert run_states["PRUNED"] + run_states["DIVERGED"] == optuna_states["PRUNED"]
    for trial in trials:
        run = runs[trial._trial_id]
        if run["state"] == "PRUNED":
            assert trial.state.name == "PRUNED" and "diverged_at" not in trial.user_attrs
            assert max(trial.intermediate_values) < spec.evaluations, "pruned at the last evaluation"
            assert run["objective"] is None and run["steps"] < 200
        elif run["state"] == "DIVERGED":
            assert trial.state.name == "PRUNED" and "diverged_at" in trial.user_attrs
        else:
            assert trial.state.name == "COMPLETE" and run["objective"] == pytest.approx(trial.value)

    # (c) tuner status, its table on one line per study
    monkeypatch.setattr(cli.console, "width", 200)
    result = CliRunner().invoke(cli.app, ["status", name, "--storage", url])
    assert result.exit_code == 0, result.output
    assert _status_row(result.output) == {
        "finished": TRIALS, "complete": run_states["COMPLETE"], "pruned": run_states["PRUNED"],
        "diverged": run_states["DIVERGED"], "failed": 0, "running": 0, "waiting": 0,
    }

    # (d) the dashboard: the Experiments page's counts and the trials every other page reads
    experiments = data.experiments(url).set_index("name")
    assert experiments.loc[name, ["complete", "pruned", "diverged"]].tolist() == [
        run_states["COMPLETE"], run_states["PRUNED"], run_states["DIVERGED"]]
    studies = data.studies(url, name)
    assert studies[["complete", "pruned", "diverged"]].iloc[0].tolist() == [
        run_states["COMPLETE"], run_states["PRUNED"], run_states["DIVERGED"]]
    shown = data.trials(url, name)
    assert Counter(shown["state"]) == run_states
    assert shown.loc[shown["state"] == "PRUNED", "objective"].isna().all()
    data.engine(url).dispose()
    engine.dispose()
